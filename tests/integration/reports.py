"""Read what a validator run left behind: the JUnit report, the saved answers, Docker objects."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import xmlschema

from tests.paths import JUNIT_SCHEMA


def read_report(path: Path) -> dict[str, dict[str, str]]:
    """{suite: {testcase: status}} after checking the file against the JUnit schema."""
    xmlschema.validate(str(path), str(JUNIT_SCHEMA))
    statuses: dict[str, dict[str, str]] = {}
    for suite in ET.parse(path).getroot():
        stage = suite.get("name", "").removeprefix("mlflow-validator.")
        statuses[stage] = {}
        for case in suite.iter("testcase"):
            status = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            statuses[stage][case.get("name", "")] = status
    return statuses


def properties(path: Path) -> dict[str, str]:
    suite = ET.parse(path).getroot()[0]
    return {p.get("name", ""): p.get("value", "") for p in suite.iter("property")}


def docker_leftovers() -> list[str]:
    listed = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", "label=org.mlflow-validator.managed"],
        capture_output=True,
        text=True,
        check=True,
    )
    images = subprocess.run(
        ["docker", "images", "--quiet", "--filter", "label=org.mlflow-validator.managed"],
        capture_output=True,
        text=True,
        check=True,
    )
    return (listed.stdout + images.stdout).split()


def saved_answer(output_dir: Path, stage: str, request: str) -> Any:
    """The body a stage answered to a request, as saved next to the report."""
    return json.loads((output_dir / "answers" / stage / f"{request}.json").read_text())
