"""Once the model is reached, every run ends in a JUnit report that names what went wrong: a broken
model file, a check that crashes, a bad setting. Each case: the right exit code, one line on stderr,
a report that validates against the schema, and nothing left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlflow_validator import cli
from tests.integration.conftest import assert_nothing_left
from tests.integration.reports import read_report

EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-classifier"


def broken_copy(tmp_path: Path, name: str, text: str) -> Path:
    model = tmp_path / "model"
    shutil.copytree(EXAMPLE, model)
    (model / name).write_text(text)
    return model


def case(report: Path, stage: str, name: str) -> ET.Element:
    found = ET.parse(report).getroot().find(f"testsuite[@name='mlflow-validator.{stage}']/testcase[@name='{name}']")
    assert found is not None, f"no testcase {stage}/{name}"
    return found


def assert_one_line(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("file", "text", "check", "said"),
    [
        ("conda.yaml", "dependencies: [python\n  - pip: [", "environment-agreement", "conda.yaml is not valid YAML"),
        ("MLmodel", "flavors: {python_function: [\n", "mlmodel", "MLmodel is not valid YAML"),
    ],
)
def test_a_malformed_model_file_fails_its_check_and_the_report_names_it(run_cli, tmp_path, file, text, check, said):
    model = broken_copy(tmp_path, file, text)
    result = run_cli("validate", str(model), "--stages", "static")
    assert result.returncode == 1, result.stdout + result.stderr
    assert_one_line(result.stderr, "the gate failed", check, said)
    report = tmp_path / "mlflow-validator-report" / "junit.xml"
    assert read_report(report)["static"][check] == "failure"
    assert said in case(report, "static", check).find("failure").get("message", "")
    assert_nothing_left(result.scratch)


def test_a_check_that_crashes_is_an_error_for_that_check_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    def crashes(ctx: object) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr("mlflow_validator.stages.static.check_secrets", crashes)
    out = tmp_path / "out"
    code = cli.main(["validate", str(EXAMPLE), "--stages", "static", "--output-dir", str(out)], cwd=tmp_path)
    stderr = capsys.readouterr().err
    assert code == 2
    assert_one_line(stderr, "could not validate", "static secrets", "RuntimeError: a bug in a check")
    statuses = read_report(out / "junit.xml")["static"]
    assert statuses["secrets"] == "error"
    assert statuses["signature"] == statuses["example-matches-signature"] == "passed"
    crashed = case(out / "junit.xml", "static", "secrets")
    assert "Traceback" in crashed.findtext("system-out", "")
    log = (out / "mlflow-validator.log").read_text()
    assert "RuntimeError: a bug in a check" in log and "Traceback" in log


@pytest.mark.parametrize(
    ("path", "said"),
    [("/proc/no/such/report.xml", "cannot write the report"), ("/proc/sys/report.xml", "is not writable")],
)
def test_an_unwritable_report_path_is_refused_before_any_work(run_cli, tmp_path, path, said):
    result = run_cli("validate", str(EXAMPLE), "--stages", "static", "--junit-xml", path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_line(result.stderr, said, "writable report path")
    assert "Validating" not in result.stdout
    assert not (tmp_path / "mlflow-validator-report").exists()
    assert_nothing_left(result.scratch)


def test_a_config_file_with_a_syntax_error_is_one_line(run_cli, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("timeouts:\n  predict: [300\nstages: static\n")
    result = run_cli("validate", str(EXAMPLE))
    assert result.returncode == 2
    assert_one_line(result.stderr, "is not valid YAML", "line", "fix its syntax")
    assert_nothing_left(result.scratch)


def test_config_prints_every_setting_with_its_source_and_hides_credentials(run_cli, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("env: {set: {API_TOKEN: hunter2}}\ntimeouts: {predict: 30}\n")
    result = run_cli("config", "--rtol", "0.01", env={"HTTPS_PROXY": "http://me:hunter2@proxy.example:3128"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "(flag --rtol)" in lines["tolerance.rtol"]
    assert "config file" in lines["timeouts.predict"]
    assert "(environment HTTPS_PROXY)" in lines["build.https_proxy"]
    assert "(default)" in lines["timeouts.install"]
    assert "hunter2" not in result.stdout


def test_sigterm_while_a_stage_runs_still_writes_the_report(registered, tmp_path):
    """A cancelled CI job: the interrupted stage is marked, the report is written, exit 2."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    command = [sys.executable, "-m", "mlflow_validator", "validate", "models:/iris-classifier/1"]
    command += ["--stages", "static,venv"]
    command += ["--tracking-uri", registered.tracking_uri, "--output-dir", str(out)]
    child = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert child.stdout is not None
    seen = []
    for line in child.stdout:  # each check prints a line as it finishes
        seen.append(line)
        if " venv " in line:  # the venv stage has begun: cancel it mid-way
            break
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, "".join(seen) + stdout + stderr
    assert_one_line(stderr, "cancelled", "removed")
    interrupted = case(out / "junit.xml", "venv", "interrupted")
    assert "cancelled by SIGTERM" in interrupted.find("error").get("message", "")
    assert read_report(out / "junit.xml")["docker"] == {"docker": "skipped"}
    assert (out / "mlflow-validator.log").is_file()
    assert_nothing_left(scratch)


def test_sigterm_while_several_models_run_stops_each_and_reports_them_all(tmp_path):
    """A cancelled CI job validating two models at once: each child gets SIGTERM and cleans up after
    itself, the merged report names both interruptions, exit 2, nothing left behind."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    for name in ("model-a", "model-b"):
        shutil.copytree(EXAMPLE, tmp_path / name)
    command = [sys.executable, "-m", "mlflow_validator", "validate", "model-a", "model-b", "--jobs", "2"]
    command += ["--stages", "static,venv", "--output-dir", str(out)]
    child = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert child.stdout is not None
    seen: list[str] = []
    for line in child.stdout:
        seen.append(line)
        if sum(" venv " in earlier for earlier in seen) >= 2:  # both models are in the venv stage
            break
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=180)
    assert child.returncode == 2, "".join(seen) + stdout + stderr
    assert_one_line(stderr, "cancelled", "removed")
    models = {suite.get("name"): suite for suite in ET.parse(out / "junit.xml").getroot()}
    assert set(models) == {"model-a", "model-b"}
    for suite in models.values():
        messages = [error.get("message", "") for error in suite.iter("error")]
        assert any("cancelled by SIGTERM" in message for message in messages)
    assert_nothing_left(scratch)
