"""The run's log, kept in memory and written next to the report as mlflow-validator.log.

Written only once the model was reached (with the report) or after a crash, so a refused input
leaves nothing behind; it holds every command run, the settings (redacted) and any traceback.
"""

from __future__ import annotations

import logging
import platform
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mlflow_validator import __version__
from mlflow_validator.outputs import LOG_FILE

LOG_FILE_NAME = LOG_FILE


def _version_of(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


class RunLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        self.lines: list[str] = []
        self.settings = ""  # the resolved settings, redacted, once known

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def write(self, directory: Path, crash: BaseException | None = None) -> Path:
        header = [
            f"mlflow-validator {__version__}, Python {platform.python_version()} on {platform.system()} "
            f"{platform.release()} {platform.machine()}, "
            f"mlflow {_version_of('mlflow')}, uv {_version_of('uv')}",
            "",
            "settings:",
            self.settings or "(not resolved)",
            "",
        ]
        footer = ["", "crash:", *traceback.format_exception(crash)] if crash is not None else []
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOG_FILE_NAME
        path.write_text("\n".join([*header, *self.lines, *footer]) + "\n", encoding="utf-8")
        return path
