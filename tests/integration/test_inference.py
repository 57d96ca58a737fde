"""Inference in depth: real models, logged to the real MLflow server, answered in real uv virtualenvs
(and one in a real container). Each lands on its verdict with a message a user can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, CliResult, assert_nothing_left, pins
from tests.integration.reports import docker_leftovers, read_report, saved_answer

SECRETS = {
    "MLFLOW_TRACKING_TOKEN": "tok",
    "DATABRICKS_TOKEN": "dapi",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "GITHUB_TOKEN": "ghp",
    "CI_JOB_TOKEN": "ci",
}


@pytest.fixture(scope="module")
def tracking_uri(registered) -> str:
    """Log and register one model per kind of input and per defect, through the real server."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5, 2.5], "n": [1, 2, 3]})

    def log(name: str, code: str, example: object, **kwargs: object) -> None:
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODELS_DIR / code),
                input_example=example,
                pip_requirements=pins("mlflow", "pandas", "numpy"),
                registered_model_name=name,
                **kwargs,
            )

    log("frame-model", "frame_model.py", frame, model_config={"offset": 0.0})
    log("frame-model", "frame_model.py", frame, model_config={"offset": 0.25})  # version 2: every score moves
    mlflow.MlflowClient().set_registered_model_alias("frame-model", "champion", "1")
    log("tensor-model", "tensor_model.py", np.arange(12, dtype=np.float32).reshape(3, 4))
    log("dict-model", "dict_model.py", {"text": ["a", "bb", "ccc"], "weight": [1.0, 0.5, 2.0]})
    log(
        "params-model",
        "params_model.py",
        (frame, {"scale": 2.0}),
        signature=infer_signature(frame, [1.0, 3.0, 5.0], params={"scale": 1.0}),
    )
    log("seeded-model", "random_model.py", frame, model_config={"seed": 7})
    log("unseeded-model", "random_model.py", frame)
    log("bad-output-model", "bad_output_model.py", frame, signature=infer_signature(frame, pd.Series([0, 1, 2])))
    log("unserializable-model", "unserializable_model.py", frame, signature=infer_signature(frame))
    log("environment-probe", "environment_probe_model.py", frame, signature=infer_signature(frame, ["mode=x"]))
    return registered.tracking_uri


def validate(run_cli, tracking_uri: str, model: str, *flags: str, env: dict[str, str] | None = None) -> CliResult:
    return run_cli("validate", model, "--tracking-uri", tracking_uri, "--stages", "venv", *flags, env=env)


def report_of(tmp_path: Path) -> dict[str, dict[str, str]]:
    return read_report(tmp_path / "mlflow-validator-report" / "junit.xml")


def answers_dir(tmp_path: Path) -> Path:
    return tmp_path / "mlflow-validator-report"


def test_data_frame_model_answers_every_payload_format_and_rejects_invalid_input(run_cli, tracking_uri, tmp_path):
    result = validate(run_cli, tracking_uri, "models:/frame-model/1")
    assert result.returncode == 0, result.stdout + result.stderr
    venv = report_of(tmp_path)["venv"]
    for check in ("answers", "rejects-invalid-input", "deterministic", "output-contract", "timing", "generated-inputs"):
        assert venv[check] == "passed", check
    out = answers_dir(tmp_path)
    assert saved_answer(out, "venv", "derived-csv") == saved_answer(out, "venv", "input-example")
    assert saved_answer(out, "venv", "derived-records") == saved_answer(out, "venv", "input-example")
    assert len(saved_answer(out, "venv", "derived-batch")["predictions"]) == 16
    assert saved_answer(out, "venv", "derived-contract-missing-column")["error_code"]
    assert "load " in result.stdout and "p95" in result.stdout
    assert_nothing_left(result.scratch)


@pytest.mark.parametrize(
    ("model", "derived"),
    [("tensor-model", ["derived-instances", "derived-contract-wrong-type"]), ("dict-model", ["derived-instances"])],
)
def test_tensor_and_dict_inputs_are_answered_in_their_formats(run_cli, tracking_uri, tmp_path, model, derived):
    result = validate(run_cli, tracking_uri, f"models:/{model}/1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report_of(tmp_path)["venv"]["generated-inputs"] == "passed", "no false alarm from generated inputs"
    for name in ("input-example", "derived-single-row", "derived-batch", *derived):
        assert (answers_dir(tmp_path) / "answers" / "venv" / f"{name}.json").is_file(), name


def test_params_are_sent_with_the_example_values_and_with_their_defaults(run_cli, tracking_uri, tmp_path):
    result = validate(run_cli, tracking_uri, "models:/params-model/1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report_of(tmp_path)["venv"]["generated-inputs"] == "passed", "params within their types are answered"
    out = answers_dir(tmp_path)
    assert saved_answer(out, "venv", "input-example") == {"predictions": [1.0, 3.0, 5.0]}  # scale 2.0
    assert saved_answer(out, "venv", "derived-params-defaults") == {"predictions": [0.5, 1.5, 2.5]}  # scale 1.0


@pytest.mark.parametrize(("model", "verdict"), [("seeded-model", 0), ("unseeded-model", 1)])
def test_randomness_fails_only_without_a_seed(run_cli, tracking_uri, tmp_path, model, verdict):
    result = validate(run_cli, tracking_uri, f"models:/{model}/1")
    assert result.returncode == verdict, result.stdout + result.stderr
    if verdict:
        assert report_of(tmp_path)["venv"]["deterministic"] == "failure"
        assert "non-deterministic output: input-example" in result.stdout
        assert "Seed the model's randomness" in result.stdout


def test_answer_that_breaks_the_output_signature_fails(run_cli, tracking_uri, tmp_path):
    result = validate(run_cli, tracking_uri, "models:/bad-output-model/1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report_of(tmp_path)["venv"]["output-contract"] == "failure"
    assert "breaks the output signature: row 0 is float 0.5, the signature says long" in result.stdout


def test_answer_that_is_not_json_serializable_fails_in_the_venv_stage(run_cli, tracking_uri, tmp_path):
    result = validate(run_cli, tracking_uri, "models:/unserializable-model/1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report_of(tmp_path)["venv"]["answers"] == "failure"
    assert "cannot turn the model's answer into JSON: a value of type Decimal" in result.stdout


def test_undeclared_environment_variable_is_named_with_how_to_declare_it(run_cli, tracking_uri, tmp_path):
    result = validate(run_cli, tracking_uri, "models:/environment-probe/1", env={"MODEL_MODE": "set-but-not-declared"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reads the environment variable MODEL_MODE, which nobody declared" in result.stdout
    assert "env: {pass: [MODEL_MODE]}" in result.stdout


def test_declared_variables_reach_the_model_and_ci_secrets_do_not(run_cli, tracking_uri, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("env:\n  set: {MODEL_MODE: offline}\n")
    result = validate(run_cli, tracking_uri, "models:/environment-probe/1", env=SECRETS)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = saved_answer(answers_dir(tmp_path), "venv", "input-example")
    assert answer["predictions"][0] == "mode=offline secrets=none in=venv"


def test_user_requests_expected_responses_and_budgets_gate(run_cli, tracking_uri, tmp_path):
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "two-rows.json").write_text(
        '{"dataframe_split": {"columns": ["x", "n"], "data": [[1.0, 1], [4.0, 0]]}}'
    )
    (requests / "two-rows.expected.json").write_text(
        '[{"score": 3.0, "label": "low"}, {"score": 8.0, "label": "high"}]'
    )
    (requests / "one-row.csv").write_text("x,n\n1.0,1\n")
    (requests / "one-row.expected.json").write_text('{"predictions": [{"score": 3.5, "label": "low"}]}')
    (tmp_path / "mlflow-validator.yaml").write_text("budgets:\n  max_load_seconds: 0.001\n")
    result = validate(run_cli, tracking_uri, "models:/frame-model/1", "--requests", str(requests))
    assert result.returncode == 1, result.stdout + result.stderr
    venv = report_of(tmp_path)["venv"]
    assert (venv["answers"], venv["expected-responses"], venv["timing"]) == ("passed", "failure", "failure")
    assert "not the expected response one-row.expected.json" in result.stdout
    assert "first at row 0, column score" in result.stdout and "expected 3.5 vs venv 3.0" in result.stdout
    assert "exceeds max_load_seconds 0.001" in result.stdout


def test_baseline_comparison_says_what_changed_and_gates_on_the_fraction(run_cli, tracking_uri, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("budgets:\n  max_changed_fraction: 0.1\n")
    result = validate(run_cli, tracking_uri, "models:/frame-model/2", "--baseline", "models:/frame-model@champion")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report_of(tmp_path)["venv"]["changed-vs-baseline"] == "failure"
    assert "answers changed from models:/frame-model@champion" in result.stdout
    assert "the largest change is 0.25" in result.stdout
    assert "more than max_changed_fraction 0.1" in result.stdout
    assert_nothing_left(result.scratch)


@pytest.mark.docker
def test_container_gets_declared_variables_only_and_its_different_answers_fail(
    run_cli, tracking_uri, docker_engine, tmp_path
):
    (tmp_path / "mlflow-validator.yaml").write_text("env:\n  pass: [MODEL_MODE]\n")
    result = run_cli(
        "validate",
        "models:/environment-probe/1",
        "--tracking-uri",
        tracking_uri,
        "--stages",
        "venv,docker",
        env={**SECRETS, "MODEL_MODE": "offline"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    docker = report_of(tmp_path)["docker"]
    assert (docker["answers"], docker["rejects-invalid-input"], docker["output-contract"]) == ("passed",) * 3
    assert docker["matches-venv"] == "failure"
    container = saved_answer(answers_dir(tmp_path), "container", "input-example")
    assert container["predictions"][0] == "mode=offline secrets=none in=container"
    assert '"mode=offline secrets=none in=venv" vs container "mode=offline secrets=none in=container"' in result.stdout
    assert docker_leftovers() == []
    assert_nothing_left(result.scratch)
