"""Both serving targets for real, side by side on the engine: MLflow's scoring server and MLServer 1.7.1 with
mlserver-mlflow from PyPI, asked the same plan (MLServer in KServe's V2 protocol) and compared with the venv."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, assert_nothing_left, pins
from tests.integration.reports import docker_leftovers, read_report, saved_answer

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def records_model(registered) -> str:
    """A model whose answer is a list of records, which MLflow's scoring server sends and MLServer cannot."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(registered.tracking_uri)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS_DIR / "records_model.py"),
            input_example=pd.DataFrame({"x": [0.5, 1.5, 2.5], "n": [1, 2, 3]}),
            pip_requirements=pins("mlflow", "pandas", "numpy"),
            registered_model_name="records-model",
        )
    return "models:/records-model/1"


def test_a_model_both_servers_answer_alike_passes_on_both_and_mlserver_says_what_it_changed(
    run_cli, registered, docker_engine, tmp_path
):
    result = run_cli(
        "validate", "models:/iris-classifier@champion", "--tracking-uri", registered.tracking_uri, "--serving", "both"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    for stage in ("docker", "mlserver"):
        assert {name: status for name, status in report[stage].items() if status != "skipped"} == dict.fromkeys(
            ("generate-dockerfile", "build-image", "start-container", "package-parity", "answers",
             "rejects-invalid-input", "output-contract", "matches-venv", "timing"),
            "passed",
        ), stage  # fmt: skip
    output = Path(tmp_path / "mlflow-validator-report")
    assert saved_answer(output, "mlserver", "input-example") == saved_answer(output, "venv", "input-example")
    assert "/v2/models/mlflow-model/ready answered" in result.stdout
    assert "except what MLServer changes: " in result.stdout  # MLflow 3's protobuf and fastapi are too new for it
    assert docker_leftovers() == []
    assert_nothing_left(result.scratch)


def test_a_model_only_the_scoring_server_serves_fails_on_mlserver_with_its_error_and_what_to_change(
    run_cli, registered, records_model, docker_engine, tmp_path
):
    kept = "mlflow-validator-test/records:1"
    result = run_cli(
        "validate", records_model, "--tracking-uri", registered.tracking_uri, "--serving", "both", "--image-tag", kept
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    assert (report["docker"]["answers"], report["docker"]["matches-venv"]) == ("passed", "passed")
    assert report["mlserver"]["answers"] == "failure"
    assert "AttributeError: 'list' object has no attribute 'items'" in result.stdout  # MLServer's own words
    assert "return one of those from predict, or serve the model with MLflow's scoring server" in result.stdout
    # MLServer's stage runs first: MLflow's image, which passed on its own, is not kept for promotion
    assert report["docker"]["keep-image"] == "skipped" and "not kept: the mlserver stage failed" in result.stdout
    assert subprocess.run(["docker", "image", "inspect", kept], capture_output=True, check=False).returncode != 0
    assert docker_leftovers() == []
    assert_nothing_left(result.scratch)
