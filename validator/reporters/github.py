"""GitHub Actions: the step summary and annotations, from the same records as every reporter.

Active when the CLI runs in a GitHub Actions job (`GITHUB_ACTIONS=true`). The summary is Markdown appended
to `GITHUB_STEP_SUMMARY` (GitHub shows at most 1 MiB of it per step); annotations are workflow commands on
stdout (at most ANNOTATIONS_PER_KIND of each kind, then one notice with the count). The step's outputs
are the Action's (`validator/action.py`), which may run several models.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from validator.reporters.console import VERDICTS
from validator.results import CheckResult, ModelIdentity, Status, ValidationReport

SUMMARY_LIMIT_BYTES = 1024 * 1024
ANNOTATIONS_PER_KIND = 10
DETAILS_LIMIT_CHARS = 4000  # per failure; the full text is in the JUnit report and the output directory
ICONS = {Status.PASSED: "✅", Status.WARNED: "⚠️", Status.FAILED: "❌", Status.SKIPPED: "⏭️", Status.ERROR: "💥"}
VERDICT_ICONS = {0: "✅", 1: "❌", 2: "💥"}


def escape_data(text: str) -> str:
    """A workflow command's message: %, CR and LF are encoded, as GitHub's toolkit does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (title=, file=): also : and , are encoded."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_link(identity: ModelIdentity, tracking_uri: str) -> str:
    """The version's page in the MLflow UI, when the tracking URI is a web address."""
    if not (tracking_uri.startswith(("http://", "https://")) and identity.name and identity.version):
        return ""
    return f"{tracking_uri.rstrip('/')}/#/models/{identity.name}/versions/{identity.version}"


def summary(report: ValidationReport, tracking_uri: str, details_limit: int = DETAILS_LIMIT_CHARS) -> str:
    identity = report.identity
    link = model_link(identity, tracking_uri)
    title = f"[{identity.uri}]({link})" if link else f"`{identity.uri}`"
    lines = [
        f"## {VERDICT_ICONS[report.exit_code]} {title}: {VERDICTS[report.exit_code]}",
        "",
        "| stage | check | result | time | message |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for check in report.checks:
        lines.append(
            f"| {check.stage.value} | {check.name} | {ICONS[check.status]} {check.status.value} "
            f"| {check.duration_s:.2f} s | {_cell(check.message)} |"
        )
    for check in report.checks:
        if check.status in (Status.FAILED, Status.ERROR):
            lines += ["", f"### {check.stage.value} {check.name}", "", check.message]
            if check.details:
                shown = check.details[-details_limit:]
                lines += ["", "<details><summary>details</summary>", "", "```", shown.replace("```", "'''"), "```"]
                lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def bounded_summary(report: ValidationReport, tracking_uri: str) -> str:
    """The summary within GitHub's limit: the details shrink first, then the table goes."""
    for details_limit in (DETAILS_LIMIT_CHARS, 500, 0):
        text = summary(report, tracking_uri, details_limit)
        if len(text.encode()) <= SUMMARY_LIMIT_BYTES:
            return text
    return f"## {VERDICT_ICONS[report.exit_code]} {report.identity.uri}: {VERDICTS[report.exit_code]}\n"


def workflow_commands(report: ValidationReport) -> list[str]:
    commands = []
    for status, kind in ((Status.FAILED, "error"), (Status.ERROR, "error"), (Status.WARNED, "warning")):
        commands += [_annotation(kind, check) for check in report.checks if check.status is status]
    errors = [c for c in commands if c.startswith("::error")]
    warnings = [c for c in commands if c.startswith("::warning")]
    shown = errors[:ANNOTATIONS_PER_KIND] + warnings[:ANNOTATIONS_PER_KIND]
    hidden = len(commands) - len(shown)
    if hidden:
        shown.append(f"::notice::{hidden} more failed or warned checks: see the step summary and the JUnit report")
    return shown


def _annotation(kind: str, check: CheckResult) -> str:
    title = escape_property(f"mlflow-validator {check.stage.value} {check.name}")
    return f"::{kind} title={title}::{escape_data(check.message)}"


class GitHubReporter:
    def __init__(self, env: Mapping[str, str], tracking_uri: str, stream: TextIO | None = None) -> None:
        self.env = env
        self.tracking_uri = tracking_uri
        self.stream = stream or sys.stdout

    def model_fetched(self, identity: ModelIdentity) -> None:
        pass

    def check_finished(self, result: CheckResult) -> None:
        pass

    def report_finished(self, report: ValidationReport) -> None:
        for command in workflow_commands(report):
            print(command, file=self.stream, flush=True)
        if path := self.env.get("GITHUB_STEP_SUMMARY"):
            with open(path, "a", encoding="utf-8") as summary_file:
                summary_file.write(bounded_summary(report, self.tracking_uri))
