"""The venv stage uses interpreters on the machine and never downloads one; the static stage reads the pickled
bytecode of another Python with that Python's opcode table."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import cloudpickle
import pytest
import yaml

from mlflow_validator.stages.static.pickles import analyze_pickle
from mlflow_validator.stages.venv.interpreter import search_path
from tests.integration.conftest import assert_nothing_left
from tests.integration.reports import read_report

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


def test_missing_minor_release_without_a_container_to_run_it_in_cannot_be_validated(run_cli, tmp_path):
    model = model_asking_for_python(tmp_path, "3.4.10")
    report = tmp_path / "report.xml"
    result = run_cli(
        "validate", str(model), "--stages", "venv", "--sandbox-backend", "bubblewrap", "--junit-xml", str(report)
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no Python 3.4 interpreter on this machine" in result.stdout
    assert "(sandbox.backend is bubblewrap)" in result.stdout
    assert "install Python 3.4 on the runner" in result.stdout and "downloads: auto" in result.stdout
    assert "<error" in report.read_text()
    assert_nothing_left(result.scratch)


def only_python_311(tmp_path: Path) -> dict[str, str]:
    """The environment of a runner whose PATH has Python 3.11 alone: no pyenv, no interpreter uv installed."""
    nothing = tmp_path / "no-interpreters"
    nothing.mkdir()
    system = ["/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    path = os.pathsep.join([str(Path(sys.executable).parent), *system])
    env = {"PATH": path, "PYENV_ROOT": str(nothing), "UV_PYTHON_INSTALL_DIR": str(nothing)}
    others = [minor for minor in ("3.9", "3.10", "3.12", "3.13") if shutil.which(f"python{minor}", path=path)]
    assert others == [], f"the stand-in runner's PATH has Python {others}"
    return env


@pytest.mark.docker
def test_a_python_313_model_passes_on_a_runner_with_only_311_caged_in_a_container_of_its_python(
    run_cli, docker_engine, tmp_path
):
    model = model_asking_for_python(tmp_path, "3.13.0")
    env = only_python_311(tmp_path)

    doctor = run_cli("doctor", str(model), "--stages", "static,venv", env=env, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "none on this machine: the model will run in a container of python:3.13.0-slim" in doctor.stdout

    result = run_cli("validate", str(model), "--stages", "venv", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Python 3.13 on this machine: the model runs in a container" in result.stdout
    facts = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")["venv"]
    assert facts["sandbox"] == facts["load-model"] == "passed"
    assert_nothing_left(result.scratch)


def download_list_of_this_machines_python(minor: str, tmp_path: Path) -> Path:
    """A uv download list (UV_PYTHON_DOWNLOADS_JSON_URL) of one archive in python-build-standalone's layout,
    made of this machine's interpreter of `minor`, its libpython found relative to it, as a closed network's
    mirror would serve."""
    found = next((p for p in runnable(f"python{minor}")), None)
    if found is None:
        pytest.fail(f"no Python {minor} on this machine to make a download of")
    prefix = Path(subprocess.run([found, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                                 text=True, check=True).stdout.strip())  # fmt: skip
    patch = subprocess.run([found, "-c", "import sys; print(sys.version_info.micro)"], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    root = tmp_path / "archive" / "python"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    shutil.copy2(prefix / "bin" / f"python{minor}", root / "bin")
    (root / "bin" / "python3").symlink_to(f"python{minor}")
    for library in (prefix / "lib").glob(f"libpython{minor}*.so*"):
        shutil.copy2(library, root / "lib")
    skipped = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "__pycache__")
    shutil.copytree(prefix / "lib" / f"python{minor}", root / "lib" / f"python{minor}", ignore=skipped)
    (root / "lib" / f"python{minor}" / "site-packages").mkdir()
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", root / "bin" / f"python{minor}"], check=True)
    archive = tmp_path / f"cpython-{minor}.{patch}.tar.gz"
    subprocess.run(["tar", "-C", root.parent, "-czf", archive, "python"], check=True)
    major, minor_number = (int(part) for part in minor.split("."))
    listing = {
        f"cpython-{minor}.{patch}-linux-x86_64-gnu": {
            "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
            "major": major, "minor": minor_number, "patch": int(patch), "prerelease": "", "variant": None,
            "url": archive.as_uri(), "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        }
    }  # fmt: skip
    downloads = tmp_path / "downloads.json"
    downloads.write_text(json.dumps(listing))
    return downloads


def test_with_downloads_auto_uv_installs_the_models_python_from_the_mirror_and_it_passes_caged(run_cli, tmp_path):
    model = model_asking_for_python(tmp_path, "3.13.0")
    mirror = download_list_of_this_machines_python("3.13", tmp_path)
    env = only_python_311(tmp_path) | {"UV_PYTHON_DOWNLOADS_JSON_URL": str(mirror)}

    result = run_cli(
        "validate", str(model), "--stages", "venv", "--python-downloads", "auto", "--sandbox-backend", "bubblewrap",
        env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Python 3.13.0 at {tmp_path / 'no-interpreters'}" in result.stdout
    assert "bubblewrap:" in result.stdout
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
