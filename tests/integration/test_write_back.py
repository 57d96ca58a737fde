"""The verdict written back to the real registry when asked: version tags naming the stages that ran, nothing with
--dry-run or without --write-back, an alias only for a run of every stage (test_validate_cli's full run sets one),
and a registry that refuses an asked-for write (403) is exit 2 with the verdict still reported."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.reports import read_report
from tests.integration.services import direct_session

STATIC = ("--stages", "static")


def client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def read_only_registry(registered) -> Iterator[str]:
    """The real server behind a front that, like a server whose token may only read, answers every
    write with 403 and MLflow's error JSON; reads pass through."""
    session = direct_session()

    class Front(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            upstream = session.get(registered.tracking_uri + self.path, timeout=30)
            self._answer(upstream.status_code, upstream.content)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            denied = {"error_code": "PERMISSION_DENIED", "message": "Permission denied for this token."}
            self._answer(403, json.dumps(denied).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_DELETE = do_PATCH = do_POST

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_pass_of_the_static_stage_alone_is_tagged_as_such_and_promises_nothing(registered, run_cli, tmp_path):
    result = run_cli(
        "validate", "models:/iris-classifier/1", "--tracking-uri", registered.tracking_uri, *STATIC, "--write-back"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED static only: venv, docker did not run, so the model is not validated for promotion" in result.stdout
    assert "may be promoted" not in result.stdout
    tags = client(registered.tracking_uri).get_model_version("iris-classifier", "1").tags
    assert (tags["mlflow_validator.status"], tags["mlflow_validator.stages"]) == ("partial", "static")
    assert tags["mlflow_validator.stages_not_run"] == "venv,docker"
    record = json.loads((tmp_path / "mlflow-validator-report" / "report.json").read_text())
    assert record["stages"]["not_run"] == {stage: "not selected (--stages static)" for stage in ("venv", "docker")}


def test_an_alias_for_fewer_than_every_stage_is_a_usage_error_before_any_work(registered, run_cli, tmp_path):
    result = run_cli(
        "validate", "models:/iris-classifier/1", "--tracking-uri", registered.tracking_uri, *STATIC,
        "--on-pass-set-alias", "production",
    )  # fmt: skip

    assert result.returncode == 2
    assert "--on-pass-set-alias promotes only a model that every stage validated" in result.stderr
    assert not (tmp_path / "mlflow-validator-report").exists()
    reserved = run_cli("validate", "models:/iris-classifier/1", "--on-pass-set-alias", "latest")
    assert reserved.returncode == 2 and "'latest' is no alias MLflow accepts" in reserved.stderr


def test_a_failure_is_tagged_with_the_failed_checks_and_gets_no_alias(registered, run_cli):
    result = run_cli(
        "validate", "models:/iris-bad-pin/1", "--tracking-uri", registered.tracking_uri, *STATIC, "--write-back"
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    version = client(registered.tracking_uri).get_model_version("iris-bad-pin", "1")
    assert version.tags["mlflow_validator.status"] == "failed"
    assert "static/resolvable" in version.tags["mlflow_validator.checks_failed"]
    assert "validated" not in version.aliases


def test_a_dry_run_says_what_it_would_write_and_writes_nothing(registered, run_cli):
    result = run_cli(
        "validate", "models:/iris-classifier@champion", "--tracking-uri", registered.tracking_uri, *STATIC,
        "--write-back", "--dry-run",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Registry (dry run, nothing written): iris-classifier version 1:" in result.stdout
    assert "mlflow_validator.stages=static" in result.stdout


def test_a_read_only_token_validates_when_no_write_back_is_asked_for(read_only_registry, run_cli):
    result = run_cli("validate", "models:/iris-classifier/1", "--tracking-uri", read_only_registry, *STATIC)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Registry" not in result.stdout


def test_a_registry_that_refuses_the_write_is_exit_2_and_the_verdict_stays_in_the_report(
    read_only_registry, run_cli, tmp_path
):
    result = run_cli(
        "validate", "models:/iris-classifier/1", "--tracking-uri", read_only_registry, *STATIC, "--write-back"
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "refused the verdict for iris-classifier version 1: PERMISSION_DENIED" in result.stderr
    assert "Traceback" not in result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    assert set(report["static"].values()) <= {"passed", "skipped"}
    assert "PASSED" in result.stdout
    record = json.loads((tmp_path / "mlflow-validator-report" / "report.json").read_text())
    assert (record["exit_code"], record["verdict"]) == (2, "error"), "the records agree with the exit code"
    assert "PERMISSION_DENIED" in record["write_back_error"]
    verdict_env = (tmp_path / "mlflow-validator-report" / "verdict.env").read_text()
    assert "MLFLOW_VALIDATOR_EXIT_CODE=2" in verdict_env


def test_doctor_finds_out_before_any_work_whether_the_token_may_write(registered, read_only_registry, run_cli):
    asked = ("models:/iris-classifier/1", *STATIC, "--write-back")
    refused = run_cli("doctor", *asked, "--tracking-uri", read_only_registry)
    dry_run = run_cli("doctor", *asked, "--dry-run", "--tracking-uri", read_only_registry)
    allowed = run_cli("doctor", *asked, "--tracking-uri", registered.tracking_uri)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "MISSING  write-back" in refused.stdout and "PERMISSION_DENIED" in refused.stdout
    assert dry_run.returncode == 0 and "write-back" not in dry_run.stdout, "a dry run writes nothing, nor probes"
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "ok  write-back" in allowed.stdout
    tags = client(registered.tracking_uri).get_model_version("iris-classifier", "1").tags
    assert "mlflow_validator.doctor" not in tags, "the probe tag is removed again"
