"""The team's own pytest checks, run against real models in both stages: each test a testcase of its
stage's suite, a test that fails only in the container, a test limited to a stage, a file that does not
compile, policies per file, the baseline fixture comparing two versions, and `init-checks`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from textwrap import dedent

import pytest

from mlflow_validator.expectations.team import ChecksContext, run_team_checks
from mlflow_validator.results import ModelIdentity, Stage, Status
from mlflow_validator.settings import Options
from tests.integration.conftest import MODELS_DIR, pins
from tests.integration.reports import read_report
from tests.integration.test_inference import SECRETS

EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-classifier"


@pytest.fixture(scope="module")
def tracking_uri(registered) -> str:
    """The environment probe (it answers where it runs) and two versions of a model whose scores move."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5, 2.5], "n": [1, 2, 3]})
    logged = [
        ("team-probe", "environment_probe_model.py", {}, infer_signature(frame, ["mode=x"])),
        ("team-frame", "frame_model.py", {"model_config": {"offset": 0.0}}, None),
        ("team-frame", "frame_model.py", {"model_config": {"offset": 0.25}}, None),
    ]
    for name, code, extra, signature in logged:
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODELS_DIR / code),
                input_example=frame,
                signature=signature,
                pip_requirements=pins("mlflow", "pandas", "numpy"),
                registered_model_name=name,
                **extra,
            )
    return registered.tracking_uri


def write_checks(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(dedent(text))
    return directory


PROBE_CHECKS = {
    "test_probe.py": """
        import os

        import pytest

        ROW = {"x": [1.0], "n": [2]}


        def test_answers_in_every_stage(model):
            assert model.predict(ROW)[0].startswith("mode=offline")


        def test_answers_as_in_the_venv(model):
            assert model.predict(ROW)[0].endswith("in=venv"), "outputs changed between environments"


        @pytest.mark.stages("docker")
        def test_the_container_is_reached_over_http(model, stage, model_info):
            answer = model.invoke('{"dataframe_split": {"columns": ["x", "n"], "data": [[1.0, 2]]}}')
            assert (answer.status, stage, model_info.name) == (200, "docker", "team-probe")


        def test_the_checks_see_no_ci_secret():
            assert not {"GITHUB_TOKEN", "MLFLOW_TRACKING_TOKEN", "CI_JOB_TOKEN"} & set(os.environ)
        """,
}


@pytest.mark.docker
def test_team_checks_run_against_each_stages_model_and_one_fails_only_in_the_container(
    run_cli, tracking_uri, tmp_path, docker_engine
):
    (tmp_path / "mlflow-validator.yaml").write_text("env:\n  set: {MODEL_MODE: offline}\n")
    checks = write_checks(tmp_path / "checks", PROBE_CHECKS)
    result = run_cli(
        "validate", "models:/team-probe/1", "--tracking-uri", tracking_uri, "--checks", str(checks), env=SECRETS
    )

    assert result.returncode == 1, result.stdout + result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    assert {name: status for name, status in report["venv"].items() if name.startswith("test_")} == {
        "test_probe.py::test_answers_in_every_stage": "passed",
        "test_probe.py::test_answers_as_in_the_venv": "passed",
        "test_probe.py::test_the_container_is_reached_over_http": "skipped",
        "test_probe.py::test_the_checks_see_no_ci_secret": "passed",
    }
    assert {name: status for name, status in report["docker"].items() if name.startswith("test_")} == {
        "test_probe.py::test_answers_in_every_stage": "passed",
        "test_probe.py::test_answers_as_in_the_venv": "failure",
        "test_probe.py::test_the_container_is_reached_over_http": "passed",
        "test_probe.py::test_the_checks_see_no_ci_secret": "passed",
    }, result.stdout
    assert "FAIL  docker test_probe.py::test_answers_as_in_the_venv" in result.stdout
    assert "AssertionError: outputs changed between environments" in result.stdout


def test_a_file_that_does_not_compile_is_an_error_of_its_own_and_policies_apply_per_file(run_cli, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text('checks:\n  "test_soft.py": warn\n')
    checks = write_checks(
        tmp_path / "checks",
        {
            "test_broken.py": "def test_nothing(:\n    pass\n",
            "test_rows.py": """
                def test_every_row_gets_a_class(model, input_example, signature):
                    assert len(model.predict(input_example)) == len(input_example)
                    assert signature.inputs.input_names()[0] == "sepal length (cm)"
                """,
            "test_soft.py": """
                def test_a_rule_still_under_discussion(model, input_example):
                    assert model.predict(input_example.head(1)) == [2], "setosa expected"
                """,
        },
    )
    result = run_cli("validate", str(EXAMPLE), "--stages", "venv", "--checks", str(checks))

    assert result.returncode == 2, "a check that cannot run: could not validate"
    venv = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")["venv"]
    assert venv["test_broken.py"] == "error"
    assert venv["test_rows.py::test_every_row_gets_a_class"] == "passed"
    assert venv["test_soft.py::test_a_rule_still_under_discussion"] == "passed", "warned: JUnit says passed"
    assert "WARN  venv   test_soft.py::test_a_rule_still_under_discussion" in result.stdout
    assert "SyntaxError" in result.stdout


@pytest.mark.parametrize(
    ("hook", "exit_code"),
    [
        ("pytest_collection_finish(session)", 0),
        ("pytest_collection_finish(session)", 1),
        ("pytest_runtest_teardown(item)", 0),
    ],
    ids=["before-any-test-exit-0", "before-any-test-exit-1", "after-the-first-test-exit-0"],
)
def test_checks_that_stop_before_every_test_ran_cannot_validate(tmp_path, hook, exit_code):
    """A conftest that ends pytest early (or a plugin that does not import, a crash) leaves tests not run:
    never a pass, whatever those that ran said."""
    checks = write_checks(
        tmp_path / "checks",
        {
            "conftest.py": f"""
                import pytest

                def {hook}:
                    pytest.exit("not today", returncode={exit_code})
                """,
            "test_a.py": "def test_a(): pass\n\ndef test_b(): pass\n",
        },
    )
    options = dataclasses.replace(Options("m"), checks_dir=checks)
    context = ChecksContext(Stage.VENV, "http://127.0.0.1:9", None, tmp_path, ModelIdentity("m", "m"), {}, 5)

    outcome = run_team_checks(context, options, os.environ, tmp_path / "work")

    assert outcome.status is Status.ERROR and outcome.cases[-1].status is Status.ERROR
    assert f"pytest could not run the checks in {checks} (exit {exit_code}; " in outcome.message
    assert [case.name for case in outcome.cases[:-1]] == (["test_a.py::test_a"] if "runtest" in hook else [])


def test_the_baseline_fixture_asks_the_version_in_production(run_cli, tracking_uri, tmp_path):
    checks = write_checks(
        tmp_path / "checks",
        {
            "test_against_production.py": """
                import pytest


                def test_scores_move_by_the_new_offset(model, baseline, model_info):
                    row = {"x": [1.0], "n": [2]}
                    new, old = model.predict(row)[0]["score"], baseline.predict(row)[0]["score"]
                    assert model_info.version == "2"
                    assert new - old == pytest.approx(0.25)
                """,
        },
    )
    result = run_cli(
        "validate",
        "models:/team-frame/2",
        *("--tracking-uri", tracking_uri, "--stages", "venv", "--baseline", "models:/team-frame/1"),
        *("--checks", str(checks)),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    venv = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")["venv"]
    assert venv["test_against_production.py::test_scores_move_by_the_new_offset"] == "passed"


def test_init_checks_writes_an_example_that_passes_against_the_model_at_hand(run_cli, tmp_path):
    written = run_cli("init-checks", "checks", str(EXAMPLE))
    assert written.returncode == 0, written.stderr
    example = tmp_path / "checks" / "test_model.py"
    for fixture in ("model", "stage", "signature", "input_example", "model_info", "baseline"):
        assert f"{fixture}" in example.read_text()

    result = run_cli("validate", str(EXAMPLE), "--stages", "venv", "--checks", "checks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " PASS  venv   test_model.py::" in result.stdout
