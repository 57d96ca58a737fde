"""The one subprocess helper, with `subprocess.Popen` faked: timeouts, exit codes and missing tools."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mlflow_validator.commands as commands
from mlflow_validator.errors import Cancelled, CommandError

Fake = Callable[..., subprocess.CompletedProcess[str]]


class FakeProcess:
    """Stands in for subprocess.Popen: `communicate` asks the fake what the process did."""

    def __init__(self, fake: Fake, args: list[str], kwargs: dict[str, Any]) -> None:
        self.fake, self.args, self.kwargs = fake, args, kwargs
        self.returncode: int | None = None
        self.killed = False

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, None]:
        if self.killed:
            return "", None
        self.kwargs.update(input=input, timeout=timeout)
        completed = self.fake(self.args, **{key: value for key, value in self.kwargs.items() if key != "args"})
        self.returncode = completed.returncode
        return completed.stdout, None

    def kill(self) -> None:
        self.killed = True

    def wait(self) -> int:
        return self.returncode or -9


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> Callable[[Fake], list[dict[str, Any]]]:
    """Install a fake subprocess.Popen (and a `which` that finds every tool); returns the calls it saw."""

    def install(fake: Fake) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def popen(args: list[str], **kwargs: Any) -> FakeProcess:
            call = {"args": args, **kwargs}
            calls.append(call)
            return FakeProcess(fake, args, call)

        monkeypatch.setattr(commands.shutil, "which", lambda name, path=None: f"/usr/bin/{name}")
        monkeypatch.setattr(commands.subprocess, "Popen", popen)
        return calls

    return install


def exits(code: int, output: str) -> Fake:
    return lambda args, **kwargs: subprocess.CompletedProcess(args, code, output)


def test_a_timeout_becomes_a_command_error_with_the_output_tail(fake_run):
    lines = [f"line {i}" for i in range(100)]

    def slow(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, kwargs["timeout"], output="\n".join(lines).encode())

    fake_run(slow)

    with pytest.raises(CommandError) as raised:
        commands.run(["uv", "pip", "install", "numpy"], timeout_s=5)

    assert "did not finish within 5 s" in str(raised.value)
    assert raised.value.output_tail.splitlines() == lines[-commands.TAIL_LINES :]


def test_a_timeout_without_output_has_an_empty_tail(fake_run):
    def slow(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(args, kwargs["timeout"], output=None)

    fake_run(slow)

    with pytest.raises(CommandError) as raised:
        commands.run(["sleep", "10"], timeout_s=5)

    assert raised.value.output_tail == ""


def test_a_non_zero_exit_with_check_names_the_code_and_the_last_line(fake_run):
    fake_run(exits(3, "resolving\nerror: no matching distribution\n\n"))

    with pytest.raises(CommandError) as raised:
        commands.run(["uv", "pip", "install", "nope"], timeout_s=5)

    message = str(raised.value)
    assert "exited with 3" in message
    assert "error: no matching distribution" in message
    assert raised.value.output_tail == "resolving\nerror: no matching distribution"


def test_a_non_zero_exit_without_output_says_so(fake_run):
    fake_run(exits(1, ""))

    with pytest.raises(CommandError, match=r"exited with 1: \(no output\)"):
        commands.run(["false"], timeout_s=5)


def test_a_non_zero_exit_without_check_is_returned(fake_run):
    fake_run(exits(2, "out\nlast\n"))

    result = commands.run(["uv", "pip", "install", "nope"], timeout_s=5, check=False)

    assert not result.ok
    assert result.returncode == 2
    assert result.args == ("uv", "pip", "install", "nope")
    assert result.tail() == "out\nlast"


def test_a_success_returns_the_output_and_runs_the_located_executable(fake_run, tmp_path: Path):
    calls = fake_run(exits(0, "hello\n"))

    result = commands.run(["echo", tmp_path], timeout_s=7, env={"PATH": "/usr/bin"}, stdin_text="in")

    assert result.ok
    assert result.output == "hello\n"
    assert calls[0]["args"] == ["/usr/bin/echo", str(tmp_path)]
    assert calls[0]["timeout"] == 7
    assert calls[0]["env"] == {"PATH": "/usr/bin"}
    assert calls[0]["input"] == "in"
    assert calls[0]["stderr"] == subprocess.STDOUT


def test_a_missing_executable_is_a_command_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a process was started for a missing tool")

    monkeypatch.setattr(commands.subprocess, "Popen", never)

    with pytest.raises(CommandError, match="is not installed or not on PATH"):
        commands.run(["no-such-tool-here"], timeout_s=5, env={"PATH": str(tmp_path)})


def test_a_cancellation_while_a_process_starts_is_raised_once_the_process_is_held(fake_run, monkeypatch):
    """SIGTERM landing between the fork and the moment run() holds the process must not orphan it."""
    started = []

    def cancelled_at_spawn(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise AssertionError("the process must be killed, not waited for")

    calls = fake_run(cancelled_at_spawn)
    spawning = type(commands.SPAWNING)
    real_enter = spawning.__enter__

    def signal_during_spawn(self: object) -> None:
        real_enter(commands.SPAWNING)
        commands.cancel(signal.SIGTERM, None)  # deferred: the process is not held yet
        started.append(True)

    monkeypatch.setattr(spawning, "__enter__", signal_during_spawn)
    with pytest.raises(Cancelled):
        commands.run(["uv", "venv", "x"], timeout_s=5)
    assert started and len(calls) == 1
    assert commands.SPAWNING.deferred is None
