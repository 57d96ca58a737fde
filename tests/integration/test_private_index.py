"""A model that needs a package from an authenticated private index: both stages install it with the
credentials the CI gives, and the password appears in no output, no image layer and no image history."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, pins
from tests.integration.reports import read_report

DOCKER = os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker")


@pytest.fixture(scope="module")
def private_helper_model(registered, private_index) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"x": [1.0, 2.0]})
    mlflow.set_tracking_uri(registered.tracking_uri)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS_DIR / "private_helper_model.py"),
            input_example=example,
            signature=infer_signature(example, pd.DataFrame({"score": [2.0, 4.0]})),
            pip_requirements=[*pins("mlflow", "pandas", "numpy"), private_index.package],
            registered_model_name="private-helper",
        )
    return "models:/private-helper/1"


def docker_output(*args: str) -> bytes:
    return subprocess.run([DOCKER, *args], capture_output=True, timeout=300, check=True).stdout


def image_contains(image: str, secret: bytes) -> bool:
    """Whether any layer or the config of `image` holds `secret`, read from `docker save`'s stream."""
    save = subprocess.Popen([DOCKER, "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    tail, found = b"", False
    while chunk := save.stdout.read(1 << 20):
        found = found or secret in tail + chunk
        tail = chunk[-len(secret) :]
    assert save.wait(timeout=300) == 0
    return found


@pytest.mark.docker
def test_a_private_index_with_credentials_serves_both_stages_and_the_password_appears_nowhere(
    registered, private_index, private_helper_model, run_cli, docker_engine, tmp_path: Path
):
    result = run_cli(
        "validate", private_helper_model, "--tracking-uri", registered.tracking_uri,
        env={"PIP_EXTRA_INDEX_URL": private_index.authenticated_url},
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    output_dir = tmp_path / "mlflow-validator-report"
    report = read_report(output_dir / "junit.xml")
    assert report["venv"]["answers"] == report["docker"]["matches-venv"] == "passed"
    assert report["docker"]["package-parity"] == "passed"
    assert "mv-private-helper==1.0.0" in (output_dir / "requirements.lock.txt").read_text()
    password = private_index.password.encode()
    assert password not in (result.stdout + result.stderr).encode()
    leaking = [path for path in output_dir.rglob("*") if path.is_file() and password in path.read_bytes()]
    assert leaking == []
    dependency_image = re.search(r"mlflow-validator/serving-dependencies:[0-9a-f]{16}", result.stdout)
    assert dependency_image, result.stdout
    image = dependency_image.group(0)
    assert password not in docker_output("history", "--no-trunc", image)
    assert password not in docker_output("image", "inspect", image)
    assert not image_contains(image, password)
