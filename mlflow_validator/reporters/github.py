"""GitHub Actions: the step summary and annotations, from the same records as every reporter.

Active when the CLI runs in a GitHub Actions job (`GITHUB_ACTIONS=true`). The summary (`markdown.py`) is appended
to `GITHUB_STEP_SUMMARY`; annotations are workflow commands on stdout (at most ANNOTATIONS_PER_KIND of each
kind, then one notice with the count). The step's outputs
are the Action's (`mlflow_validator/batch/action.py`), which may run several models.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mlflow_validator.reporters import Reporter
from mlflow_validator.reporters.markdown import bounded_summary
from mlflow_validator.results import Status, ValidationReport

ANNOTATIONS_PER_KIND = 10


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF are encoded, as GitHub's toolkit does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=, file=): also : and , are encoded."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Blame:
    """Where in the repository a model's annotations point when a check names no file: its manifest line."""

    path: Path
    line: int


def _file_property(path: Path, workspace: Path, line: int = 0) -> str:
    """`file=` (and `line=`) for a file of the repository; nothing for a file outside it."""
    try:
        relative = path.absolute().relative_to(workspace.absolute())
    except ValueError:
        return ""
    return f"file={escape_property(relative.as_posix())}" + (f",line={line}" if line else "")


def check_annotations(
    report: ValidationReport, workspace: Path, label: str = "", blame: Blame | None = None
) -> list[str]:
    """A workflow command per failed, errored or warned check, on the file to blame when there is one."""
    found = []
    for status, kind in ((Status.FAILED, "error"), (Status.ERROR, "error"), (Status.WARNED, "warning")):
        for check in (c for c in report.checks if c.status is status):
            if check.source:
                where = _file_property(Path(check.source), workspace)
            else:
                where = _file_property(blame.path, workspace, blame.line) if blame else ""
            title = escape_property(" ".join(filter(None, ("mlflow-validator", label, check.stage.value, check.name))))
            found.append(f"::{kind} {where + ',' if where else ''}title={title}::{escape_data(check.message)}")
    return found


def error_on_file(message: str, path: Path, line: int, workspace: Path) -> str:
    """An error annotation on a file of the repository (the config file, the manifest)."""
    where = _file_property(path, workspace, line)
    return f"::error {where + ',' if where else ''}title=mlflow-validator::{escape_data(message)}"


def within_budget(commands: list[str]) -> list[str]:
    """GitHub shows ANNOTATIONS_PER_KIND of each kind per step: those, and one notice counting the rest."""
    errors = [c for c in commands if c.startswith("::error")]
    warnings = [c for c in commands if c.startswith("::warning")]
    shown = errors[:ANNOTATIONS_PER_KIND] + warnings[:ANNOTATIONS_PER_KIND]
    hidden = len(commands) - len(shown)
    if hidden:
        shown.append(f"::notice::{hidden} more failed or warned checks: see the step summary and the JUnit report")
    return shown


def append_summary(env: Mapping[str, str], text: str) -> None:
    """One write on an append-only descriptor, so summaries from parallel processes do not interleave."""
    if path := env.get("GITHUB_STEP_SUMMARY"):
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, text.encode())
        finally:
            os.close(descriptor)


class GitHubReporter(Reporter):
    def __init__(self, env: Mapping[str, str], tracking_uri: str, stream: TextIO | None = None) -> None:
        self.env = env
        self.tracking_uri = tracking_uri
        self.stream = stream or sys.stdout

    def report_finished(self, report: ValidationReport) -> None:
        for command in within_budget(check_annotations(report, Path(self.env.get("GITHUB_WORKSPACE", ".")))):
            print(command, file=self.stream, flush=True)
        append_summary(self.env, bounded_summary(report, self.tracking_uri))
