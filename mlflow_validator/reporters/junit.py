"""JUnit XML: a testsuite per stage, a testcase per check, the model's identity as properties.

A run of several models (a manifest) nests each model's stage suites in a testsuite named after the
model: GitLab, Jenkins and the GitHub report actions read nested suites (PHPUnit writes them)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from junit_xml import TestCase, TestSuite

from mlflow_validator.reporters import Reporter
from mlflow_validator.results import SELECTABLE_STAGES, CheckResult, Stage, Status, ValidationReport

# ANSI colour sequences from tool output, and characters XML 1.0 does not allow at all.
_UNPRINTABLE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    return _UNPRINTABLE.sub("", text)


def _test_case(check: CheckResult, group: str) -> TestCase:
    message = xml_safe(check.message)
    # JUnit has no "warning": a warned check passes, and says why in its output. A passed check's
    # message (timings, counts) goes to its output too; a failure carries it as the failure message.
    if check.status is Status.WARNED:
        output = f"warning: {check.message}\n{check.details}"
    elif check.status is Status.PASSED and check.message:
        output = f"{check.message}\n{check.details}".rstrip("\n")
    else:
        output = check.details
    case = TestCase(
        name=check.name,
        classname=f"{group}.{check.stage.value}",
        elapsed_sec=round(check.duration_s, 3),
        stdout=xml_safe(output) or None,
    )
    if check.status is Status.FAILED:
        case.add_failure_info(message=message, output=message, failure_type="validation")
    elif check.status is Status.ERROR:
        case.add_error_info(message=message, output=message, error_type="infrastructure")
    elif check.status is Status.SKIPPED:
        case.add_skipped_info(message=message)
    return case


def _suite_element(suite: TestSuite) -> ET.Element:
    element: ET.Element = suite.build_xml_doc()
    element.attrib.pop("disabled", None)  # junit-xml writes it; the JUnit schema CI tools read rejects it
    return element


def _totals(checks: list[CheckResult]) -> dict[str, str]:
    return {
        "tests": str(len(checks)),
        "failures": str(sum(c.status is Status.FAILED for c in checks)),
        "errors": str(sum(c.status is Status.ERROR for c in checks)),
        "time": f"{sum(c.duration_s for c in checks):.3f}",
    }


def _stage_suites(report: ValidationReport, group: str) -> list[ET.Element]:
    properties = report.properties
    return [
        _suite_element(
            TestSuite(
                name=f"{group}.{stage.value}",
                test_cases=[_test_case(check, group) for check in report.in_stage(stage)],
                properties=properties,
            )
        )
        for stage in Stage
        if stage in SELECTABLE_STAGES or report.in_stage(stage)  # MLServer's suite only when --serving asked for it
    ]


def _document(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def render(report: ValidationReport) -> str:
    """The report as JUnit XML that validates against the schema Jenkins, GitLab and GitHub actions read."""
    root = ET.Element("testsuites", name="mlflow-validator", attrib=_totals(report.checks))
    root.extend(_stage_suites(report, "mlflow-validator"))
    return _document(root)


def render_models(reports: dict[str, ValidationReport]) -> str:
    """Several models' reports in one file: a testsuite per model (named by `reports`' keys) holding its stages."""
    root = ET.Element(
        "testsuites", name="mlflow-validator", attrib=_totals([c for r in reports.values() for c in r.checks])
    )
    for label, report in reports.items():
        model = ET.SubElement(root, "testsuite", name=label, attrib=_totals(report.checks))
        model.extend(_stage_suites(report, label))
    return _document(root)


class JUnitReporter(Reporter):
    def __init__(self, path: Path) -> None:
        self.path = path

    def report_finished(self, report: ValidationReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(render(report), encoding="utf-8")
