"""What ships: the wheel built from this tree, installed into a fresh virtualenv from the built file alone
(its dependencies from the index, held to requirements.lock's versions), runs as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from uv import find_uv_bin

from mlflow_validator import __version__
from tests.paths import ROOT


def uv(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [find_uv_bin(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the console script installed from it)."""
    work = tmp_path_factory.mktemp("wheel")
    uv("build", "--wheel", "--out-dir", work / "dist", ROOT)
    (wheel,) = (work / "dist").glob("*.whl")
    uv("venv", "--quiet", work / "venv", "--python", sys.executable)
    python = work / "venv" / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", python, wheel, "--constraints", ROOT / "requirements.lock")
    yield wheel, work / "venv" / "bin" / "mlflow-validator"


def test_the_wheel_holds_the_package_and_its_data_and_no_tests(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("stages/venv/predictor.py", "settings/mlflow-validator.schema.json", "py.typed"):
        assert f"mlflow_validator/{shipped}" in names
    assert any(name.endswith("licenses/LICENSE") for name in names)
    assert not [name for name in names if name.startswith("tests/")]


def test_the_installed_wheel_validates_the_example_caged(installed, tmp_path):
    _, script = installed
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"mlflow-validator {__version__}"
    env = {**os.environ, "CI": "true", "TMPDIR": str(tmp_path)}
    env.pop("PYTHONPATH", None)
    example = ROOT / "examples" / "iris-classifier"
    done = subprocess.run(
        [script, "validate", example, "--stages", "static,venv", "--output-dir", tmp_path / "out"],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  venv   sandbox" in done.stdout and "PASSED static, venv only" in done.stdout
