"""The one way this project runs a subprocess: logged, located, bounded, with a useful error."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mlflow_validator.errors import Cancelled, CommandError, CommandTimeout

log = logging.getLogger(__name__)

TAIL_LINES = 40
ABORT_POLL_S = 0.5
# Set on a worker thread: signals reach only the main thread, so work done on another one is stopped
# through this event instead (its processes are killed as a cancellation would kill them).
_ABORT: ContextVar[threading.Event | None] = ContextVar("abort", default=None)


@contextmanager
def abortable(event: threading.Event) -> Iterator[None]:
    """Within this block (on this thread), setting `event` stops the running command: Cancelled."""
    token = _ABORT.set(event)
    try:
        yield
    finally:
        _ABORT.reset(token)


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    output: str  # stdout and stderr interleaved, as a person would have seen them
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        return tail(self.output, lines)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _Spawning:
    """Holds back a cancellation (SIGTERM, Ctrl-C) that lands while a process is being started: raised
    between the fork and the moment `run` holds the process, it would leave that process running on."""

    def __init__(self) -> None:
        self.active = False
        self.deferred: BaseException | None = None

    def __enter__(self) -> None:
        self.active = True

    def __exit__(self, *exc: object) -> None:
        self.active = False

    def raise_deferred(self) -> None:
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            raise deferred


SPAWNING = _Spawning()


def cancel(signum: int, frame: FrameType | None) -> None:
    """The handler of SIGTERM and SIGINT: unwinds like KeyboardInterrupt, so every cleanup runs."""
    raised = KeyboardInterrupt() if signum == signal.SIGINT else Cancelled()
    if SPAWNING.active:
        SPAWNING.deferred = raised
        return
    raise raised


def _located(args: Sequence[str | Path], env: Mapping[str, str] | None) -> tuple[tuple[str, ...], str]:
    """The command's arguments as strings, and its executable found on `env`'s PATH (else ours)."""
    argv = tuple(str(arg) for arg in args)
    executable = shutil.which(argv[0], path=env.get("PATH") if env is not None else None)
    if executable is None:
        raise CommandError(f"`{argv[0]}` is not installed or not on PATH", "install it and retry")
    return argv, executable


def run(
    args: Sequence[str | Path],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin_text: str | None = None,
    stdin_file: Path | None = None,
    check: bool = True,
    stream_to: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    grace_s: float = 0,
) -> CommandResult:
    """Run a command to completion and capture its output.

    `env` replaces the environment entirely when given (callers build it on purpose). The command reads
    `stdin_text` or `stdin_file` (bytes, as they are), else nothing.
    With check=True a non-zero exit raises CommandError carrying the output's tail;
    with check=False the caller inspects the result (a failed install is a finding, not a crash).
    `stream_to` gets each line as it comes (a long build's log is readable while it runs, and after a
    timeout), and so does `on_line`. On a cancellation the process is killed, or with `grace_s` sent
    SIGTERM and given that long to clean up after itself (a validation removing its containers).
    """
    argv, executable = _located(args, env)
    log.debug("$ %s", shlex.join(argv))
    started = time.monotonic()
    with open(stdin_file or os.devnull, "rb") as stdin, SPAWNING:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin_text is not None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    abort = _ABORT.get()
    streaming = (
        _Streaming(process, stream_to, on_line) if stream_to or on_line or (abort and stdin_text is None) else None
    )
    try:
        SPAWNING.raise_deferred()
        if streaming:
            output = streaming.wait(timeout_s, abort)
        else:
            output, _ = process.communicate(stdin_text, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        if streaming:
            output = streaming.wait(None)
        else:
            output = (exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output) or ""
            output += process.communicate()[0] or ""
        raise CommandTimeout(
            f"`{shlex.join(argv[:3])} …` did not finish within {timeout_s:.0f} s",
            "raise the timeout in the config file if this step is legitimately slow",
            output_tail=tail(output),
        ) from None
    except BaseException:  # a cancellation: the process must not outlive the run
        _stop(process, grace_s)
        if streaming:
            streaming.wait(None)
        raise
    result = CommandResult(argv, process.returncode, output, time.monotonic() - started)
    if check and not result.ok:
        raise CommandError(
            f"`{shlex.join(argv[:4])} …` exited with {result.returncode}: {last_line(result.output)}",
            output_tail=result.tail(),
        )
    return result


@contextmanager
def background(
    args: Sequence[str | Path],
    *,
    env: Mapping[str, str],
    cwd: Path,
    output_file: Path,
    grace_s: float,
    pass_fds: Sequence[int] = (),
    stdio: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """A process that runs while the block does (a model process serving questions), its output in
    `output_file`, `pass_fds` inherited; with `stdio`, its stdin and stdout are the caller's pipes and
    only its stderr goes to `output_file`. Leaving the block stops it: SIGTERM, then SIGKILL after `grace_s`."""
    argv, executable = _located(args, env)
    log.debug("$ %s &", shlex.join(argv))
    with open(output_file, "wb") as output, SPAWNING:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdio else output,
            stderr=output if stdio else subprocess.STDOUT,
            pass_fds=tuple(pass_fds),
        )
    try:
        SPAWNING.raise_deferred()
        yield process
    finally:
        _stop(process, grace_s)


@contextmanager
def piped(args: Sequence[str | Path], *, env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose stdin and stdout are the caller's to pump (a byte stream carried through it), its
    stderr dropped. Leaving the block kills it."""
    argv, executable = _located(args, env)
    log.debug("$ %s |", shlex.join(argv))
    with SPAWNING:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    try:
        SPAWNING.raise_deferred()
        yield process
    finally:
        _stop(process, grace_s=0)


def _stop(process: subprocess.Popen[str] | subprocess.Popen[bytes], grace_s: float) -> None:
    if grace_s:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    process.kill()
    process.wait()


class _Streaming:
    """Reads a process's output line by line on a thread, so the wait for it stays bounded."""

    def __init__(
        self, process: subprocess.Popen[str], stream_to: Path | None, on_line: Callable[[str], None] | None
    ) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(stream_to, on_line), daemon=True)
        self.reader.start()

    def _read(self, stream_to: Path | None, on_line: Callable[[str], None] | None) -> None:
        assert self.process.stdout is not None
        with open(stream_to or os.devnull, "w") as log_file:
            for line in self.process.stdout:
                self.lines.append(line)
                log_file.write(line)
                log_file.flush()
                if on_line:
                    on_line(line.rstrip("\n"))

    def wait(self, timeout_s: float | None, abort: threading.Event | None = None) -> str:
        """The whole output once the process ended; TimeoutExpired if it runs past `timeout_s`,
        Cancelled as soon as `abort` is set."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            # With an abort to watch, wake up every ABORT_POLL_S to look at it; else wait out the deadline.
            waits = [deadline - time.monotonic()] if deadline is not None else []
            waits += [ABORT_POLL_S] if abort is not None else []
            try:
                self.process.wait(timeout=max(0.0, min(waits)) if waits else None)
                break
            except subprocess.TimeoutExpired:
                if abort is not None and abort.is_set():
                    raise Cancelled() from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise
        self.reader.join(timeout=10)  # a grandchild holding the pipe open must not hold us
        return "".join(self.lines)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
