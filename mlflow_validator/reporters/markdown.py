"""The run as Markdown: what did not pass first, each failure with its details, the rest folded. GitHub's step
summary shows it (at most 1 MiB per step); every run also writes it to `summary.md` in the output directory,
for a merge request's artifacts, a pull request comment or a chat message."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlflow_validator.outputs import SUMMARY_FILE
from mlflow_validator.reporters import Reporter
from mlflow_validator.results import CheckResult, ModelIdentity, Status, ValidationReport

SUMMARY_LIMIT_BYTES = 1024 * 1024
DETAILS_LIMIT_CHARS = 4000  # per failure; the full text is in the JUnit report and the output directory
ICONS = {Status.PASSED: "✅", Status.WARNED: "⚠️", Status.FAILED: "❌", Status.SKIPPED: "⏭️", Status.ERROR: "💥"}
VERDICT_ICONS = {0: "✅", 1: "❌", 2: "💥"}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_link(identity: ModelIdentity, tracking_uri: str) -> str:
    """The version's page in the MLflow UI, when the tracking URI is a web address."""
    if not (tracking_uri.startswith(("http://", "https://")) and identity.name and identity.version):
        return ""
    parts = urlsplit(tracking_uri)
    public = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))  # never the credentials
    return f"{public.rstrip('/')}/#/models/{identity.name}/versions/{identity.version}"


def _rows(checks: list[CheckResult]) -> list[str]:
    rows = ["| stage | check | result | time | message |", "| --- | --- | --- | ---: | --- |"]
    for c in checks:
        rows.append(f"| {c.stage.value} | {c.name} | {ICONS[c.status]} {c.status.value} | {c.duration_s:.2f} s ")
        rows[-1] += f"| {_cell(c.message)} |"
    return rows


def summary(report: ValidationReport, tracking_uri: str, details_limit: int = DETAILS_LIMIT_CHARS) -> str:
    """What did not pass first, each failure with its details; what passed or was skipped folded below."""
    identity = report.identity
    link = model_link(identity, tracking_uri)
    title = f"[{identity.uri}]({link})" if link else f"`{identity.uri}`"
    lines = [f"## {VERDICT_ICONS[report.exit_code]} {title}: {report.verdict}", ""]
    if report.write_back_error:
        lines += [f"The verdict could not be written back to the registry: {_cell(report.write_back_error)}", ""]
    if not_run := report.stages_not_run:
        lines += [f"Not run: {'; '.join(f'{stage.value}: {_cell(why)}' for stage, why in not_run.items())}", ""]
    problems = [c for c in report.checks if c.status in (Status.FAILED, Status.ERROR, Status.WARNED)]
    if problems:
        lines += [*_rows(problems), ""]
    for check in problems:
        if check.status is Status.WARNED:
            continue
        lines += [f"### {check.stage.value} {check.name}", "", check.message, ""]
        if check.details:
            shown = check.details[-details_limit:]
            lines += ["<details><summary>details</summary>", "", "```", shown.replace("```", "'''"), "```", ""]
            lines += ["</details>", ""]
    rest = [c for c in report.checks if c not in problems]
    if rest:
        counts = ", ".join(
            f"{ICONS[status]} {n} {status.value}"
            for status in (Status.PASSED, Status.SKIPPED)
            if (n := sum(c.status is status for c in rest))
        )
        lines += [f"<details><summary>{counts}</summary>", "", *_rows(rest), "", "</details>"]
    return "\n".join(lines).rstrip("\n") + "\n"


def bounded_summary(report: ValidationReport, tracking_uri: str, limit: int = SUMMARY_LIMIT_BYTES) -> str:
    """The summary within `limit` bytes (GitHub's): the details shrink first, then the table goes."""
    for details_limit in (DETAILS_LIMIT_CHARS, 500, 0):
        text = summary(report, tracking_uri, details_limit)
        if len(text.encode()) <= limit:
            return text
    return f"## {VERDICT_ICONS[report.exit_code]} {report.identity.uri}: {report.verdict}\n"


def models_summary(reports: dict[str, ValidationReport], tracking_uri: str) -> str:
    """Several models: a verdict table, then each model's own summary, within GitHub's limit."""
    lines = ["# mlflow-validator", "", "| model | result |", "| --- | --- |"]
    lines += [f"| {label} | {VERDICT_ICONS[r.exit_code]} {r.verdict} |" for label, r in reports.items()]
    head = "\n".join(lines) + "\n\n"
    room = SUMMARY_LIMIT_BYTES - len(head.encode())
    parts = [bounded_summary(report, tracking_uri, room // max(1, len(reports))) for report in reports.values()]
    return head + "\n".join(parts)


class MarkdownReporter(Reporter):
    def __init__(self, output_dir: Path, tracking_uri: str) -> None:
        self.path = output_dir / SUMMARY_FILE
        self.tracking_uri = tracking_uri

    def report_finished(self, report: ValidationReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(bounded_summary(report, self.tracking_uri), encoding="utf-8")
