"""The Action's own install (scripts/install-action, as action.yml runs it): a virtualenv on CPython 3.11 from the
lock, whatever Python the job has, and a second install from the restored cache alone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlflow_validator import __version__
from tests.paths import ROOT

SCRIPT = ROOT / "scripts" / "install-action"


def install(cache: Path, venv: Path, output: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # python.org is unreachable here: uv takes the machine's 3.11, as it would a runner's, else downloads one.
    child_env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "GITHUB_OUTPUT": str(output), **env}
    child_env.pop("VIRTUAL_ENV", None)
    return subprocess.run([SCRIPT, cache, venv], capture_output=True, text=True, timeout=600, env=child_env)


def test_the_action_installs_itself_on_its_own_python_and_again_from_its_cache_alone(tmp_path):
    cache, output = tmp_path / "cache", tmp_path / "github-output"
    first = install(cache, tmp_path / "venv", output)
    assert first.returncode == 0, first.stdout + first.stderr
    # A later job: a new virtualenv, uv offline, so everything must come from the cache action.yml restores.
    again = install(cache, tmp_path / "venv-again", output, UV_OFFLINE="1")
    assert again.returncode == 0, again.stdout + again.stderr

    assert output.read_text().splitlines() == [
        f"python={tmp_path / 'venv'}/bin/python",
        f"python={tmp_path / 'venv-again'}/bin/python",
    ]
    python = tmp_path / "venv-again" / "bin" / "python"
    told = subprocess.run(
        [python, "-c", "import sys, mlflow_validator; print(sys.version_info[:2], mlflow_validator.__version__)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert told.stdout.strip() == f"(3, 11) {__version__}"
