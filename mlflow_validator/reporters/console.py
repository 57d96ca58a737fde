"""Print each check as it finishes, then the verdict. In a GitLab job each stage is a collapsible section, in a
GitHub Actions job a group."""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

from mlflow_validator.reporters import Reporter
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

MARKS = {
    Status.PASSED: "PASS",
    Status.WARNED: "WARN",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "SKIP",
    Status.ERROR: "ERROR",
}
# A check still running after RUNNING_AFTER_S says so, then every HEARTBEAT_S: a long build or install is
# never silent, and a CI runner that kills jobs quiet for too long sees the job alive.
RUNNING_AFTER_S = 5.0
HEARTBEAT_S = 30.0


# Control characters, line breaks among them: a model's output in a message must not move the terminal's
# cursor, hide a line, or start a line of its own that a CI runner reads as a command ("::error::").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def one_printable_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


def gitlab_section(edge: str, stage: Stage, header: str = "") -> str:
    """GitLab's log section marker (`edge` is start or end); the header is what the folded section shows."""
    return f"\x1b[0Ksection_{edge}:{int(time.time())}:mlflow_validator_{stage.value}\r\x1b[0K{header}"


def github_group(edge: str, stage: Stage, header: str = "") -> str:
    """GitHub's workflow commands that fold a log's lines (`edge` is start or end)."""
    return f"::group::{header}" if edge == "start" else "::endgroup::"


# How each CI folds a stage's lines: "gitlab" (GITLAB_CI=true), "github" (GITHUB_ACTIONS=true).
FOLDS = {"gitlab": gitlab_section, "github": github_group}


class ConsoleReporter(Reporter):
    def __init__(
        self,
        stream: TextIO | None = None,
        folds: str = "",
        quiet: bool = False,
        running_after_s: float = RUNNING_AFTER_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.stream = stream or sys.stdout
        self.fold = FOLDS.get(folds)  # a collapsible section per stage, as the CI draws them
        self.quiet = quiet  # --quiet: what passed or was skipped is left to the report
        self.open_section: Stage | None = None
        self.running_after_s = running_after_s
        self.heartbeat_s = heartbeat_s
        self.lock = threading.Lock()  # the heartbeat prints from its own thread
        self.running: threading.Event | None = None  # set when the running check finishes

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def check_started(self, stage: Stage, name: str) -> None:
        if self.quiet:
            return
        self.running = finished = threading.Event()
        threading.Thread(target=self._heartbeat, args=(stage, name, finished), daemon=True).start()

    def _heartbeat(self, stage: Stage, name: str, finished: threading.Event) -> None:
        started = time.monotonic()
        wait = self.running_after_s
        while not finished.wait(wait):
            self._print(f"  ...  {stage.value:<6} {name:<26} {time.monotonic() - started:7.0f}s  running")
            wait = self.heartbeat_s

    def model_fetched(self, identity: ModelIdentity) -> None:
        described = ", ".join(
            f"{k.split('.', 1)[1]}={v}" for k, v in identity.as_properties().items() if k != "model.uri"
        )
        self._print(f"Validating {identity.uri} ({described})")

    def stage_started(self, stage: Stage) -> None:
        if self.fold:
            self._close_section()
            self._print(self.fold("start", stage, f"mlflow-validator: the {stage.value} stage"))
            self.open_section = stage

    def _close_section(self) -> None:
        if self.fold and self.open_section is not None:
            self._print(self.fold("end", self.open_section, ""))
            self.open_section = None

    def check_finished(self, result: CheckResult) -> None:
        if self.running is not None:
            self.running.set()
        if self.quiet and result.status in (Status.PASSED, Status.SKIPPED):
            return
        line = f"{MARKS[result.status]:>5}  {result.stage.value:<6} {result.name:<26} {result.duration_s:7.2f}s"
        if result.message:
            line += f"  {one_printable_line(result.message)}"
        self._print(line)

    def report_finished(self, report: ValidationReport) -> None:
        self._close_section()
        counts = {status: sum(c.status is status for c in report.checks) for status in Status}
        summary = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
        self._print(f"{report.verdict} ({summary})")
