"""The venv stage uses interpreters on the machine and never downloads one."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.integration.conftest import assert_nothing_left

EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-classifier"


def model_asking_for_python(tmp_path: Path, version: str) -> Path:
    model = tmp_path / "model"
    shutil.copytree(EXAMPLE, model)
    env_file = model / "python_env.yaml"
    env_file.write_text(yaml.safe_dump({**yaml.safe_load(env_file.read_text()), "python": version}))
    return model


def test_another_patch_release_is_used_and_reported(run_cli, tmp_path):
    model = model_asking_for_python(tmp_path, "3.11.99")
    result = run_cli("validate", str(model), "--stages", "venv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the model asks for Python 3.11.99; none on this machine, so using 3.11." in result.stdout


def test_missing_minor_release_cannot_be_validated(run_cli, tmp_path):
    model = model_asking_for_python(tmp_path, "3.4.10")
    report = tmp_path / "report.xml"
    result = run_cli("validate", str(model), "--stages", "venv", "--junit-xml", str(report))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Python 3.4 interpreter on this machine" in result.stdout
    assert "install Python 3.4 on the runner" in result.stdout
    assert "<error" in report.read_text()
    assert_nothing_left(result.scratch)
