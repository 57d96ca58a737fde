"""The verdict written back to the real registry: version tags on every run, the alias on a pass, nothing
with --dry-run, and a registry that refuses the write (403) is exit 2 with the verdict still reported."""

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


def test_a_pass_tags_the_version_and_sets_the_alias(registered, run_cli):
    stale = "mlflow_validator.checks_failed"  # as an earlier, failed run left it
    client(registered.tracking_uri).set_model_version_tag("iris-classifier", "1", stale, "static/pinned")
    result = run_cli(
        "validate", "models:/iris-classifier/1", "--tracking-uri", registered.tracking_uri, *STATIC,
        "--on-pass-set-alias", "validated", "--report-url", "https://ci.example.com/jobs/1",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    version = client(registered.tracking_uri).get_model_version("iris-classifier", "1")
    assert version.tags["mlflow_validator.status"] == "passed"
    assert version.tags["mlflow_validator.report"] == "https://ci.example.com/jobs/1"
    assert stale not in version.tags
    assert sorted(version.aliases) == ["champion", "validated"]
    assert "Registry: iris-classifier version 1" in result.stdout


def test_a_failure_is_tagged_with_the_failed_checks_and_gets_no_alias(registered, run_cli):
    result = run_cli(
        "validate", "models:/iris-bad-pin/1", "--tracking-uri", registered.tracking_uri, *STATIC,
        "--on-pass-set-alias", "validated",
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    version = client(registered.tracking_uri).get_model_version("iris-bad-pin", "1")
    assert version.tags["mlflow_validator.status"] == "failed"
    assert "static/resolvable" in version.tags["mlflow_validator.checks_failed"]
    assert "validated" not in version.aliases


def test_a_dry_run_says_what_it_would_write_and_writes_nothing(registered, run_cli):
    result = run_cli(
        "validate", "models:/iris-classifier@champion", "--tracking-uri", registered.tracking_uri, *STATIC,
        "--on-pass-set-alias", "dry-run-alias", "--dry-run",
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Registry (dry run, nothing written): iris-classifier version 1:" in result.stdout
    assert "alias dry-run-alias -> version 1" in result.stdout
    assert "dry-run-alias" not in client(registered.tracking_uri).get_model_version("iris-classifier", "1").aliases


def test_a_registry_that_refuses_the_write_is_exit_2_and_the_verdict_stays_in_the_report(
    read_only_registry, run_cli, tmp_path
):
    result = run_cli("validate", "models:/iris-classifier/1", "--tracking-uri", read_only_registry, *STATIC)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "refused the verdict for iris-classifier version 1: PERMISSION_DENIED" in result.stderr
    assert "Traceback" not in result.stderr
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    assert set(report["static"].values()) <= {"passed", "skipped"}
    assert "PASSED" in result.stdout
