"""The whole CLI against a real MLflow server, real uv virtualenvs and (marked) real Docker."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from mlflow_validator.checks import checks_of
from mlflow_validator.results import Stage
from tests.integration.conftest import assert_nothing_left
from tests.integration.reports import docker_leftovers, properties, read_report

VENV_SETUP = ["interpreter", "create-virtualenv", "install-requirements", "sandbox", "load-model"]
VENV_CHECKS = [
    "answers",
    "rejects-invalid-input",
    "deterministic",
    "output-contract",
    "expected-responses",
    "timing",
    "generated-inputs",
    "changed-vs-baseline",
    "team-checks",
]
DOCKER_SETUP = ["generate-dockerfile", "build-image", "start-container", "package-parity", "answers"]
DOCKER_CHECKS = [
    "rejects-invalid-input",
    "output-contract",
    "matches-venv",
    "expected-responses",
    "timing",
    "team-checks",
    "keep-image",
]

STATIC_CHECKS = [check.name for check in checks_of(Stage.STATIC)]
# no constraints, no other platform, no uv project, no code
NOT_APPLICABLE_TO_IRIS = {"runtime-constraints", "platforms", "uv-lock", "code-imports"}
ALL_CHECKS = {
    "static": STATIC_CHECKS,
    "venv": [*VENV_SETUP, *VENV_CHECKS],
    "docker": [*DOCKER_SETUP, *DOCKER_CHECKS],
}


@pytest.mark.docker
def test_good_model_passes_every_stage_and_only_then_is_promoted(registered, run_cli, docker_engine, tmp_path):
    from mlflow import MlflowClient

    registry = MlflowClient(registered.tracking_uri)
    stale = "mlflow_validator.checks_failed"  # as an earlier, failed run left it
    registry.set_model_version_tag("iris-classifier", "1", stale, "static/pinned")
    report = tmp_path / "reports" / "validation.xml"
    result = run_cli(
        "validate", "models:/iris-classifier/1", "--tracking-uri", registered.tracking_uri,
        "--stages", "static,venv,docker", "--junit-xml", str(report),
        "--on-pass-set-alias", "validated", "--report-url", "https://ci.example.com/jobs/1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {stage: dict.fromkeys(names, "passed") for stage, names in ALL_CHECKS.items()}
    expected["static"].update(dict.fromkeys(NOT_APPLICABLE_TO_IRIS, "skipped"))
    expected["venv"]["expected-responses"] = expected["docker"]["expected-responses"] = "skipped"  # no --requests
    expected["venv"]["changed-vs-baseline"] = "skipped"  # no --baseline
    expected["venv"]["team-checks"] = expected["docker"]["team-checks"] = "skipped"  # no --checks
    expected["docker"]["keep-image"] = "skipped"  # no --image-tag
    expected["venv"]["egress"] = expected["docker"]["egress"] = "skipped"  # no sandbox.egress
    assert read_report(report) == expected
    assert properties(report)["model.name"] == "iris-classifier"
    assert properties(report)["model.version"] == "1"
    assert properties(report)["stages.run"] == "static,venv,docker"
    assert "PASSED: the model may be promoted" in result.stdout
    record = json.loads((tmp_path / "mlflow-validator-report" / "report.json").read_text())
    assert list(record)[:5] == ["schema_version", "verdict", "exit_code", "stages", "validator_version"]
    assert (record["verdict"], record["stages"]) == ("passed", {"run": ["static", "venv", "docker"], "not_run": {}})
    version = registry.get_model_version("iris-classifier", "1")
    assert version.tags["mlflow_validator.status"] == "passed"
    assert version.tags["mlflow_validator.stages"] == "static,venv,docker"
    assert version.tags["mlflow_validator.report"] == "https://ci.example.com/jobs/1"
    assert stale not in version.tags and "mlflow_validator.stages_not_run" not in version.tags
    assert sorted(version.aliases) == ["champion", "validated"]
    assert "Registry: iris-classifier version 1" in result.stdout
    assert docker_leftovers() == []
    assert_nothing_left(result.scratch)


def test_unknown_requirement_version_fails_the_venv_stage(registered, run_cli, tmp_path):
    report = tmp_path / "validation.xml"
    result = run_cli(
        "validate",
        "models:/iris-bad-pin/1",
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "venv",  # the static stage would reject it first (see test_static_checks); this covers the venv stage
        "--junit-xml",
        str(report),
    )
    assert result.returncode == 1
    statuses = read_report(report)
    assert statuses["venv"]["install-requirements"] == "failure"
    assert statuses["venv"]["load-model"] == "skipped"
    failure = ET.parse(report).getroot().find(".//testcase[@name='install-requirements']/failure")
    assert failure is not None
    assert "cloudpickle==99.0.0" in failure.get("message", "")
    assert "mlflow models update-pip-requirements" in failure.get("message", "")


def test_alias_and_run_uris_resolve_to_the_same_model(registered, run_cli, tmp_path):
    for uri in ("models:/iris-classifier@champion", f"runs:/{registered.iris_run_id}/model"):
        report = tmp_path / "validation.xml"
        result = run_cli(
            "validate", uri, "--tracking-uri", registered.tracking_uri, "--stages", "static", "--junit-xml", str(report)
        )
        assert result.returncode == 0, result.stderr
        assert "failure" not in read_report(report)["static"].values()
        assert properties(report)["model.run_id"] == registered.iris_run_id
        assert read_report(report)["venv"] == {"venv": "skipped"}


def test_tracking_uri_comes_from_the_environment(registered, run_cli, tmp_path):
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--stages",
        "static",
        env={"MLFLOW_TRACKING_URI": registered.tracking_uri},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow-validator-report" / "junit.xml").is_file()


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["validate", "--help"], ["validate", "--no-such-flag"]])
def test_help_version_and_usage_errors_import_no_mlflow(args):
    """They answer in a fraction of a second (benchmarks/cli_startup.py): MLflow takes seconds to import."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom mlflow_validator.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
        "    pass\nprint('mlflow imported' if 'mlflow' in sys.modules else 'no mlflow')"
    )
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "no mlflow", done.stdout + done.stderr
