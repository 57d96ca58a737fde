"""MLflow 3's model URIs against a real server: models:/NAME/latest resolves to the newest version (which the
report and the write-back name), models:/m-<id> fetches a logged model that no registry holds, and a
manifest's entries may name either."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import pins
from tests.integration.reports import read_report


@dataclass(frozen=True)
class Models:
    tracking_uri: str
    name: str  # registered twice: versions 1 and 2
    logged_model_id: str  # logged and never registered


@pytest.fixture(scope="module")
def models(mlflow_server: str) -> Models:
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(mlflow_server)
    features, target = load_iris(return_X_y=True, as_frame=True)
    classifier = LogisticRegression(max_iter=300).fit(features, target)
    requirements = pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")
    for _ in range(2):
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                classifier, name="model", input_example=features.head(3), pip_requirements=requirements,
                registered_model_name="uri-forms",
            )  # fmt: skip
    with mlflow.start_run():
        logged = mlflow.sklearn.log_model(
            classifier, name="model", input_example=features.head(3), pip_requirements=requirements
        )
    return Models(mlflow_server, "uri-forms", logged.model_id)


def static_run(models: Models, uri: str, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlflow_validator", "validate", uri, "--tracking-uri", models.tracking_uri,
         "--stages", "static", "--output-dir", str(tmp_path / "report"), *flags],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip


def test_latest_is_the_newest_version_and_the_verdict_is_written_on_it(models: Models, tmp_path: Path):
    import mlflow

    done = static_run(models, f"models:/{models.name}/latest", tmp_path, "--write-back")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Validating models:/{models.name}/latest (name={models.name}, version=2," in done.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["identity"]["version"] == "2"
    client = mlflow.MlflowClient(models.tracking_uri)
    assert client.get_model_version(models.name, "2").tags["mlflow_validator.status"] == "partial"
    assert "mlflow_validator.status" not in client.get_model_version(models.name, "1").tags


def test_a_logged_model_is_validated_by_its_id_and_cannot_take_an_alias(models: Models, tmp_path: Path):
    uri = f"models:/{models.logged_model_id}"
    done = static_run(models, uri, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"model_id={models.logged_model_id}" in done.stdout
    assert read_report(tmp_path / "report" / "junit.xml")["static"]["resolvable"] == "passed"

    refused = static_run(models, uri, tmp_path, "--stages", "static,venv,docker", "--on-pass-set-alias", "validated")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "register the model (mlflow.register_model)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_manifest_may_name_latest_and_a_logged_model(models: Models, tmp_path: Path):
    manifest = tmp_path / "mlflow-models.yaml"
    manifest.write_text(f"environments:\n  review:\n    {models.name}: latest\n    agent: {models.logged_model_id}\n")
    done = subprocess.run(
        [sys.executable, "-m", "mlflow_validator", "plan", "--manifest", str(manifest),
         "--tracking-uri", models.tracking_uri],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)["include"]
    assert [row["model_uri"] for row in rows] == [f"models:/{models.name}/2", f"models:/{models.logged_model_id}"]
    assert rows[1]["model_id"] == models.logged_model_id
