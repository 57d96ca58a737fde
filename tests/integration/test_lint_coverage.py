"""ruff and mypy read every Python file of the package, whatever its folder is called (ruff's default
excludes once skipped `stages/venv/`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration
PACKAGE = ROOT / "mlflow_validator"


def package_files() -> set[Path]:
    return {path.resolve() for path in PACKAGE.rglob("*.py")}


def test_ruff_reads_every_file_of_the_package():
    listed = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", str(PACKAGE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert {Path(line).resolve() for line in listed.stdout.split()} == package_files()


def test_mypy_reads_every_file_of_the_package():
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--verbose"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert checked.returncode == 0, checked.stdout
    found = {Path(path).resolve() for path in re.findall(r"Found source: +BuildSource\(path='([^']+)'", checked.stderr)}
    assert found == package_files()
