import xmlschema

from mlflow_validator.reporters.junit import JUnitReporter
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport
from tests.paths import JUNIT_SCHEMA


def make_report() -> ValidationReport:
    report = ValidationReport(ModelIdentity(uri="models:/m/1", name="m", version="1", run_id="r"))
    report.checks += [
        CheckResult(Stage.STATIC, "mlmodel", Status.PASSED, 0.01),
        CheckResult(
            Stage.VENV,
            "install-requirements",
            Status.FAILED,
            2.5,
            "pkg==9 does not exist",
            "\x1b[33muv log\x00 tail <&>",
        ),
        CheckResult(Stage.VENV, "load-model", Status.SKIPPED, 0.0, "not run"),
        CheckResult(Stage.VENV, "timing", Status.PASSED, 0.0, "load 9.5 s, first answer 111 ms"),
        CheckResult(Stage.VENV, "deterministic", Status.WARNED, 0.0, "non-deterministic output"),
        CheckResult(Stage.DOCKER, "build-image", Status.ERROR, 1.0, "daemon went away"),
    ]
    return report


def test_report_validates_against_the_junit_schema(tmp_path):
    path = tmp_path / "deep" / "report.xml"
    JUnitReporter(path).report_finished(make_report())
    xmlschema.validate(str(path), str(JUNIT_SCHEMA))
    text = path.read_text()
    assert 'name="model.version" value="1"' in text
    assert "uv log tail &lt;&amp;&gt;" in text  # colour codes and NUL dropped, markup escaped
    assert 'message="pkg==9 does not exist"' in text
    assert "<system-out>load 9.5 s, first answer 111 ms</system-out>" in text  # a passed check's figures
    assert "warning: non-deterministic output" in text


def test_exit_code_follows_the_worst_status():
    report = make_report()
    assert report.exit_code == 2
    report.checks.pop()
    assert report.exit_code == 1
