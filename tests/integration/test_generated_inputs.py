"""Inputs generated from the signature against real models in the real venv stage: a scikit-learn pipeline
whose OneHotEncoder refuses categories it never saw is caught, its smallest failing input saved as a
request file that fails the same way when given back; the good example model raises no alarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import pins
from tests.integration.reports import read_report

VENV = ("--stages", "static,venv")


@pytest.fixture(scope="module")
def categorical_model(registered) -> str:
    """color (string) one-hot encoded with handle_unknown="error", size (double) passed through."""
    import mlflow
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame({"color": ["red", "green", "blue"] * 2, "size": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5]})
    encode = ColumnTransformer([("color", OneHotEncoder(handle_unknown="error"), ["color"])], remainder="passthrough")
    pipeline = make_pipeline(encode, LogisticRegression()).fit(frame, [0, 1, 0, 0, 1, 1])
    mlflow.set_tracking_uri(registered.tracking_uri)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            pipeline,
            name="model",
            input_example=frame.head(2),
            pip_requirements=pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle"),
            serialization_format="cloudpickle",
            registered_model_name="categorical-model",
        )
    return "models:/categorical-model/1"


def test_an_unseen_category_is_found_and_its_input_saved_as_a_request_file(
    run_cli, registered, categorical_model, tmp_path
):
    (tmp_path / "mlflow-validator.yaml").write_text("checks: {generated-inputs: error}\n")
    result = run_cli("validate", categorical_model, *VENV, "--tracking-uri", registered.tracking_uri)

    assert result.returncode == 1
    assert read_report(tmp_path / "mlflow-validator-report" / "junit.xml")["venv"]["generated-inputs"] == "failure"
    assert "the model raised ValueError: Found unknown categories" in result.stdout
    saved = tmp_path / "mlflow-validator-report" / "generated-inputs" / "smallest-failing.json"
    assert json.loads(saved.read_text()) == {"dataframe_split": {"columns": ["color", "size"], "data": [["", 0.0]]}}
    assert "seed 1" in result.stdout

    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "unseen-color.json").write_text(saved.read_text())
    again = run_cli(
        "validate", categorical_model, *VENV, "--tracking-uri", registered.tracking_uri, "--requests", str(requests)
    )
    assert again.returncode == 1
    assert "user-unseen-color (request file unseen-color.json) was answered 400" in again.stdout


def test_by_default_a_generated_failure_warns_and_the_good_example_model_raises_none(
    run_cli, registered, categorical_model
):
    warned = run_cli("validate", categorical_model, *VENV, "--tracking-uri", registered.tracking_uri)
    assert warned.returncode == 0
    assert "WARN  venv   generated-inputs" in warned.stdout

    example = Path(__file__).parents[2] / "examples" / "iris-classifier"
    clean = run_cli("validate", str(example), *VENV)
    assert clean.returncode == 0
    assert " PASS  venv   generated-inputs" in clean.stdout
