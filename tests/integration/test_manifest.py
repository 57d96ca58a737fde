"""Pre-merge checks on a model-registry repository: a real git repository with a deployment manifest of
five entries, a pull request that changes two, `plan` against the base branch, and `validate --manifest`
against the real registry; an entry naming an unknown model or version stops at its line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import xmlschema
import yaml

from tests.paths import JUNIT_SCHEMA

BASE_MANIFEST = """\
# Which model version runs where. Pull requests that change it are validated before merge.
environments:
  staging:
    iris-classifier: 1
    iris-bad-pin:
      version: 1
      requests: requests/bad-pin
  production:
    iris-classifier: "@champion"
  canary:
    iris-classifier: {version: 1, stages: static}
  shadow:
    iris-classifier: 1
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


@pytest.fixture
def registry_repo(tmp_path: Path) -> Path:
    """main holds the manifest; the checked-out branch is a pull request changing two of its five entries:
    production moves from the alias to a pinned version, staging's iris-bad-pin gets a new request file."""
    repo = tmp_path / "models-repo"
    (repo / "requests" / "bad-pin").mkdir(parents=True)
    (repo / "mlflow-models.yaml").write_text(BASE_MANIFEST)
    (repo / "requests" / "bad-pin" / "one-row.json").write_text('{"dataframe_split": {"columns": [], "data": []}}')
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "deployed")
    git(repo, "checkout", "--quiet", "-b", "pin-production")
    (repo / "mlflow-models.yaml").write_text(BASE_MANIFEST.replace('"@champion"', "1"))
    (repo / "requests" / "bad-pin" / "two-rows.json").write_text('{"dataframe_split": {"columns": [], "data": []}}')
    return repo


def run(repo: Path, tracking_uri: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_validator", *args, "--tracking-uri", tracking_uri],
        cwd=repo,
        env={**os.environ, "TMPDIR": str(repo.parent), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout, done.stderr)
    return done


def test_plan_lists_the_two_entries_the_pull_request_changed_with_resolved_uris(registered, registry_repo):
    done = run(registry_repo, registered.tracking_uri, "plan", "--manifest", "mlflow-models.yaml", "--base", "main")

    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["include"]
    assert [(row["id"], row["model_uri"], row["reasons"], row["line"]) for row in plan] == [
        ("staging/iris-bad-pin", "models:/iris-bad-pin/1", ["requests/bad-pin/two-rows.json changed"], 5),
        ("production/iris-classifier", "models:/iris-classifier/1", ["alias @champion -> version 1"], 9),
    ]
    assert {row["python"] for row in plan} == {platform.python_version()}, "what the matrix job sets up"


def test_validate_manifest_runs_the_changed_entries_into_one_report(registered, registry_repo):
    summary = registry_repo.parent / "step-summary.md"
    github = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(registry_repo)}
    done = run(
        registry_repo,
        registered.tracking_uri,
        *("validate", "--manifest", "mlflow-models.yaml", "--base", "main", "--stages", "static", "--jobs", "2"),
        env=github,
    )

    assert done.returncode == 1, "iris-bad-pin pins a cloudpickle that does not exist: the gate fails"
    report_dir = registry_repo / "mlflow-validator-report"
    junit = report_dir / "junit.xml"
    xmlschema.validate(str(junit), str(JUNIT_SCHEMA))
    models = {suite.get("name"): suite for suite in ET.parse(junit).getroot()}
    assert list(models) == ["staging/iris-bad-pin", "production/iris-classifier"]
    assert models["staging/iris-bad-pin"].get("failures") != "0"
    assert models["production/iris-classifier"].get("failures") == "0"
    assert [s.get("name") for s in models["production/iris-classifier"]][-1] == "production/iris-classifier.docker"

    results = {r["id"]: r for r in json.loads((report_dir / "results.json").read_text())}
    assert {key: r["verdict"] for key, r in results.items()} == {
        "staging/iris-bad-pin": "failed",
        "production/iris-classifier": "partial",  # the static stage alone
    }
    for result in results.values():
        assert (registry_repo / result["junit-xml"]).is_file()
    annotation = next(line for line in done.stdout.splitlines() if line.startswith("::error"))
    assert annotation.startswith("::error file=mlflow-models.yaml,line=5,title=mlflow-validator staging/iris-bad-pin")
    text = summary.read_text()
    assert "| staging/iris-bad-pin | ❌" in text and "| production/iris-classifier | ✅" in text


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("iris-clasifier: 1", "has no model 'iris-clasifier' (did you mean 'iris-classifier'?)"),
        ("iris-classifier: 7", "model 'iris-classifier' has no version 7: its versions are 1"),
        ('iris-classifier: "@champoin"', "has no alias '@champoin' (did you mean 'champion'?)"),
    ],
)
def test_an_entry_the_registry_does_not_know_stops_at_its_line(registered, tmp_path, entry, said):
    manifest = tmp_path / "mlflow-models.yaml"
    manifest.write_text(f"environments:\n  production:\n    iris-bad-pin: 1\n    {entry}\n")
    done = run(tmp_path, registered.tracking_uri, "validate", "--manifest", str(manifest))

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line"
    assert f"{manifest}:4: " in done.stderr and said in done.stderr
    assert not (tmp_path / "mlflow-validator-report" / "results.json").exists(), "nothing validated"


def run_action(repo: Path, outputs: Path, inputs: dict[str, str], env: dict[str, str] | None = None):
    """The Action's entry point as action.yml runs it: its inputs as INPUT_ variables."""
    variables = {f"INPUT_{name.upper().replace('-', '_')}": value for name, value in inputs.items()}
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_validator.batch.action"],
        cwd=repo,
        env={**os.environ, "TMPDIR": str(repo.parent), "GITHUB_OUTPUT": str(outputs), **variables, **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(done.stdout, done.stderr)
    return done


def test_the_action_validates_a_pull_requests_changes_and_sets_its_outputs(registered, registry_repo):
    outputs = registry_repo.parent / "github-output"
    inputs = {
        "manifest": "mlflow-models.yaml",
        "base": "main",
        "stages": "static",
        "tracking-uri": registered.tracking_uri,
    }
    done = run_action(
        registry_repo, outputs, inputs, env={"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(registry_repo)}
    )

    assert done.returncode == 1
    lines = outputs.read_text().splitlines()
    assert lines[:3] == ["verdict=failed", "exit-code=1", "junit-xml=mlflow-validator-report/junit.xml"]
    results = json.loads(next(line for line in lines if line.startswith("results=")).removeprefix("results="))
    assert [(r["id"], r["verdict"]) for r in results] == [
        ("staging/iris-bad-pin", "failed"),
        ("production/iris-classifier", "partial"),  # the static stage alone
    ]


def test_the_action_stops_in_seconds_when_what_it_needs_is_missing_and_says_so_first(registered, registry_repo):
    outputs, summary = registry_repo.parent / "github-output", registry_repo.parent / "summary.md"
    inputs = {
        "model-uri": "models:/iris-classifier/1",
        "stages": "static,venv,docker",
        "tracking-uri": registered.tracking_uri,
    }
    nowhere = f"unix://{registry_repo.parent}/no-engine.sock"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "DOCKER_HOST": nowhere}
    done = run_action(registry_repo, outputs, inputs, env=env)

    assert done.returncode == 2
    assert "MISSING  docker engine" in done.stdout
    assert summary.read_text().startswith("## 💥 mlflow-validator cannot validate here")
    assert outputs.read_text().splitlines() == ["verdict=error", "exit-code=2"]
    assert not (registry_repo / "mlflow-validator-report").exists(), "nothing validated"


def test_plan_feeds_a_gitlab_child_pipeline_and_the_actions_matrix_output(registered, registry_repo):
    base = ("--manifest", "mlflow-models.yaml", "--base", "main")
    done = run(registry_repo, registered.tracking_uri, "plan", *base, "--format", "gitlab")
    assert done.returncode == 0, done.stderr
    child = yaml.safe_load(done.stdout)
    schema = json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / "gitlab-ci.json").read_text())
    jsonschema.validate(child, schema)
    assert child["mlflow-validator"]["parallel"]["matrix"] == [
        {"ENTRY": ["staging/iris-bad-pin", "production/iris-classifier"]}
    ]

    outputs = registry_repo.parent / "plan-output"
    inputs = {"plan": "true", "manifest": "mlflow-models.yaml", "base": "main", "tracking-uri": registered.tracking_uri}
    done = run_action(registry_repo, outputs, inputs)
    assert done.returncode == 0, done.stderr
    matrix_line, count_line = outputs.read_text().splitlines()
    assert count_line == "count=2"
    assert [row["id"] for row in json.loads(matrix_line.removeprefix("matrix="))["include"]] == [
        "staging/iris-bad-pin",
        "production/iris-classifier",
    ]
