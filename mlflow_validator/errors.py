"""Errors that stop the validator from doing its job.

A failed *check* is never an exception: it is a result with status FAILED (exit code 1).
These errors mean the validator could not validate at all: exit code 2.
"""

from __future__ import annotations

from pathlib import Path

EXIT_PASSED = 0
EXIT_GATE_FAILED = 1
EXIT_CANNOT_VALIDATE = 2
EXIT_INTERNAL_ERROR = 3


class ValidatorError(Exception):
    """Base error: `problem` says what is wrong, `fix` says what to do about it."""

    exit_code = EXIT_CANNOT_VALIDATE

    def __init__(self, problem: str, fix: str = "", *, file: Path | None = None, line: int = 0) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.file = file  # the user's file at fault (config file, manifest), for annotations on it
        self.line = line

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}" if self.fix else self.problem


class UsageError(ValidatorError):
    """Bad flags, config file or environment."""


class ModelNotFoundError(ValidatorError):
    """The model URI names nothing the registry or the file system knows."""


class RegistryUnreachableError(ValidatorError):
    """The tracking server or registry did not answer (after bounded retries)."""


class RegistryRefusedError(ValidatorError):
    """The registry answered, but refused to take the verdict (a read-only token, a 403)."""


class DockerUnavailableError(ValidatorError):
    """The docker stage was asked for but no engine answers."""


class InfrastructureError(ValidatorError):
    """A tool the validator drives failed for a reason that is not the model's fault."""


class CommandError(InfrastructureError):
    """A subprocess failed, could not start, or timed out."""

    def __init__(self, problem: str, fix: str = "", *, output_tail: str = "") -> None:
        super().__init__(problem, fix)
        self.output_tail = output_tail


class CommandTimeout(CommandError):
    """A subprocess ran past its timeout and was killed."""


class Cancelled(BaseException):
    """SIGTERM arrived (CI job cancelled): unwinds like KeyboardInterrupt so cleanup runs."""
