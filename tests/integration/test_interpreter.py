"""The venv stage uses interpreters on the machine and never downloads one; the static stage reads the pickled
bytecode of another Python with that Python's opcode table."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from textwrap import dedent

import cloudpickle
import pytest
import yaml

from mlflow_validator.stages.static.pickles import analyze_pickle
from mlflow_validator.stages.venv.interpreter import search_path
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


PICKLED_BY_ANOTHER_PYTHON = dedent(
    """
    import os, sys, cloudpickle
    KEY = "SERVICE_TOKEN"
    def reads(prefix):
        name = "DB_URL"
        try:
            import orjson
        except ImportError:
            orjson = None
        return os.environ[name], os.getenv(KEY), os.environ.get(prefix + "_X"), orjson
    sys.stdout.buffer.write(cloudpickle.dumps(reads))
    """
)


def runnable(command: str):
    """The interpreters of that name on the search path that run (a pyenv shim may not)."""
    for directory in search_path(os.environ).split(os.pathsep):
        candidate = Path(directory) / command
        if candidate.is_file() and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            yield candidate


@pytest.mark.parametrize("minor", ["3.10", "3.12", "3.13"])
def test_bytecode_pickled_by_another_python_is_read_with_that_pythons_opcodes(tmp_path, minor):
    python = next((p for p in runnable(f"python{minor}")), None)
    if python is None:
        pytest.skip(f"no Python {minor} on this machine")
    # cloudpickle is pure Python: the copy installed here pickles for any of them.
    packages = tmp_path / "packages"
    shutil.copytree(Path(cloudpickle.__file__).parent, packages / "cloudpickle")
    pickled = subprocess.run(
        [python, "-c", PICKLED_BY_ANOTHER_PYTHON], env={**os.environ, "PYTHONPATH": str(packages)},
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (tmp_path / "python_model.pkl").write_bytes(pickled)

    (findings,) = analyze_pickle(tmp_path / "python_model.pkl", tmp_path, f"{minor}.0")

    assert (findings.env_vars, findings.computed_env_reads) == (("DB_URL", "SERVICE_TOKEN"), 1)
    assert findings.code_unread == ""
    # An `except ImportError` makes it optional where the exception table says which handler catches it (3.11+);
    # before, the handler depends on the path taken, and the import is counted as required.
    assert ("orjson" in findings.imports) is (minor == "3.10")
