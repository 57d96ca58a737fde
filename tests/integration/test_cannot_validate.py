"""Every input the validator must refuse: exit 2, one line naming the fix, nothing left behind."""

from __future__ import annotations

import socket

import pytest

from tests.integration.conftest import assert_nothing_left
from tests.integration.reports import docker_leftovers


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_refused(result, *fragments: str) -> None:
    """Exit 2, one line on stderr that contains every fragment, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert_nothing_left(result.scratch)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/iris-classifier/99", "does not exist in the registry"),
        ("models:/iris-classifier@nobody", "does not exist in the registry"),
        ("models:/no-such-model/1", "does not exist in the registry"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "does not exist in the registry"),
    ],
)
def test_unknown_model(registered, run_cli, tmp_path, uri, expected):
    result = run_cli("validate", uri, "--tracking-uri", registered.tracking_uri, "--stages", "static")
    assert_refused(result, expected, "check the name")
    assert not (tmp_path / "mlflow-validator-report").exists()


def test_unreachable_registry(run_cli, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    result = run_cli("validate", "models:/iris-classifier/1", "--tracking-uri", uri, "--stages", "static", timeout=120)
    assert_refused(result, "did not answer", "--tracking-uri")


def test_docker_stage_without_engine(registered, run_cli):
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "static,docker",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert_refused(result, "no Docker engine", "--stages")


def test_default_stages_without_engine_skip_docker_and_say_how_to_enable_it(registered, run_cli, tmp_path):
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--tracking-uri",
        registered.tracking_uri,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "start dockerd" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stages", "static,dokcer"], "did you mean 'docker'"),
        (["--rtol", "-1"], "invalid tolerance.rtol"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--config", "missing.yaml"], "cannot read config file"),
        (["--constraints", "/nonexistent/runtime.txt"], "constraints file /nonexistent/runtime.txt does not exist"),
        (["--ca-bundle", "/nonexistent/ca.pem"], "CA bundle"),
        (["--requests", "/nonexistent/requests"], "requests directory /nonexistent/requests does not exist"),
        (["--baseline", "s3://bucket/model"], "unsupported model URI 's3://bucket/model'"),
        (["--baseline", "models:/iris-classifier/1", "--stages", "static"], "add venv to --stages"),
    ],
)
def test_bad_arguments(run_cli, tmp_path, args, expected):
    result = run_cli("validate", "models:/iris-classifier/1", *args)
    assert_refused(result, expected)
    assert list(tmp_path.glob("mlflow-validator-report")) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("checks:\n  pined: warn\n", "unknown setting 'checks.pined'"),
        ("checks:\n  pinned: warning\n", "unknown policy (did you mean 'warn'?)"),
        ("constraints: /nonexistent/runtime.txt\n", "constraints file"),
        ("env:\n  pass: [NOT_SET_IN_THIS_JOB]\n", "env.pass names NOT_SET_IN_THIS_JOB"),
        ("budgets:\n  max_latency: 100\n", "did you mean 'budgets.max_latency_ms'"),
    ],
)
def test_bad_check_configuration(run_cli, tmp_path, config, expected):
    (tmp_path / "mlflow-validator.yaml").write_text(config)
    assert_refused(run_cli("validate", "models:/iris-classifier/1"), expected)


def test_unknown_config_key_gets_a_hint(run_cli, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("tolerance:\n  rtoll: 0.1\n")
    assert_refused(
        run_cli("validate", "models:/iris-classifier/1"),
        "unknown setting 'tolerance.rtoll'",
        "did you mean 'tolerance.rtol'",
    )


def test_unknown_baseline_is_refused_before_any_work(registered, run_cli):
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "venv",
        "--baseline",
        "models:/iris-classifier@nobody",
    )
    assert_refused(result, "does not exist in the registry")
    assert "PASS" not in result.stdout  # refused before the first check


@pytest.mark.parametrize("uri", ["s3://bucket/model", "no/such/dir"])
def test_unsupported_or_missing_uri(run_cli, uri):
    assert_refused(run_cli("validate", uri, "--stages", "static"), uri.split("/")[0])


def test_unwritable_report_path(registered, run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "static",
        "--junit-xml",
        str(blocker / "report.xml"),
    )
    assert_refused(result, "cannot write the report", "writable")


@pytest.mark.docker
def test_nothing_left_behind(docker_engine):
    assert docker_leftovers() == []
