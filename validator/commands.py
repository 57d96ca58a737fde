"""The one way this project runs a subprocess: logged, located, bounded, with a useful error."""

from __future__ import annotations

import logging
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from validator.errors import Cancelled, CommandError

log = logging.getLogger(__name__)

TAIL_LINES = 40


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


def run(
    args: Sequence[str | Path],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin_text: str | None = None,
    check: bool = True,
) -> CommandResult:
    """Run a command to completion and capture its output.

    `env` replaces the environment entirely when given (callers build it on purpose).
    With check=True a non-zero exit raises CommandError carrying the output's tail;
    with check=False the caller inspects the result (a failed install is a finding, not a crash).
    """
    argv = tuple(str(arg) for arg in args)
    executable = shutil.which(argv[0], path=env.get("PATH") if env is not None else None)
    if executable is None:
        raise CommandError(f"`{argv[0]}` is not installed or not on PATH", "install it and retry")
    log.debug("$ %s", shlex.join(argv))
    started = time.monotonic()
    with SPAWNING:
        process = subprocess.Popen(
            [executable, *argv[1:]],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    try:
        SPAWNING.raise_deferred()
        output, _ = process.communicate(stdin_text, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        output = (exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output) or ""
        output += process.communicate()[0] or ""
        raise CommandError(
            f"`{shlex.join(argv[:3])} …` did not finish within {timeout_s:.0f} s",
            "raise the timeout in the config file if this step is legitimately slow",
            output_tail=tail(output),
        ) from None
    except BaseException:  # a cancellation: the process must not outlive the run
        process.kill()
        process.wait()
        raise
    result = CommandResult(argv, process.returncode, output, time.monotonic() - started)
    if check and not result.ok:
        raise CommandError(
            f"`{shlex.join(argv[:4])} …` exited with {result.returncode}: {last_line(result.output)}",
            output_tail=result.tail(),
        )
    return result


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
