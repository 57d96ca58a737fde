"""JUnit XML: a testsuite per stage, a testcase per check, the model's identity as properties."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from junit_xml import TestCase, TestSuite

from validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

# ANSI colour sequences from tool output, and characters XML 1.0 does not allow at all.
_UNPRINTABLE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    return _UNPRINTABLE.sub("", text)


def _test_case(check: CheckResult) -> TestCase:
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
        classname=f"mlflow-validator.{check.stage.value}",
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


def render(report: ValidationReport) -> str:
    """The report as JUnit XML that validates against the schema Jenkins, GitLab and GitHub actions read."""
    properties = report.properties
    suites = [
        TestSuite(
            name=f"mlflow-validator.{stage.value}",
            test_cases=[_test_case(check) for check in report.in_stage(stage)],
            properties=properties,
        )
        for stage in Stage
    ]
    root = ET.Element("testsuites", name="mlflow-validator")
    totals = {
        "tests": len(report.checks),
        "failures": sum(c.status is Status.FAILED for c in report.checks),
        "errors": sum(c.status is Status.ERROR for c in report.checks),
    }
    root.attrib.update({key: str(value) for key, value in totals.items()})
    root.attrib["time"] = f"{sum(c.duration_s for c in report.checks):.3f}"
    root.extend(_suite_element(suite) for suite in suites)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


class JUnitReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def model_fetched(self, identity: ModelIdentity) -> None:
        pass

    def check_finished(self, result: CheckResult) -> None:
        pass

    def report_finished(self, report: ValidationReport) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(render(report), encoding="utf-8")
