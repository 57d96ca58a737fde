"""Command line: parse, resolve options, plan, dispatch. No validation logic lives here."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, NoReturn

from validator import __version__, commands
from validator.errors import EXIT_CANNOT_VALIDATE, EXIT_INTERNAL_ERROR, Cancelled, UsageError, ValidatorError
from validator.model.fetch import parse_model_uri
from validator.pipeline import Pipeline, Reporter
from validator.plan import plan_stages
from validator.reporters.console import ConsoleReporter
from validator.reporters.github import GitHubReporter
from validator.reporters.junit import JUnitReporter
from validator.results import Stage, Status, ValidationReport
from validator.runlog import RunLog
from validator.settings import Options, resolve_options
from validator.settings.declared import SETTINGS
from validator.settings.docs import default_text, describe
from validator.settings.types import BOOL
from validator.stages.docker.engine import engine_problem
from validator.writeback import planned_write, write

PROG = "mlflow-validator"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; CI logs want one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"see `{self.prog} --help`")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per declared setting that has one. default=SUPPRESS: a flag the user did not give
    must not hide the config file or the environment."""
    for setting in SETTINGS:
        declaration = setting.declaration
        if not declaration.flag:
            continue
        env = f"; env {', '.join(declaration.env)}" if declaration.env else ""
        help_text = f"{declaration.help} (default: {default_text(setting)}{env})".replace("%", "%%")
        kind: dict[str, Any] = (
            {"action": "store_const", "const": True} if declaration.type is BOOL else {"metavar": setting.field.upper()}
        )
        parser.add_argument(declaration.flag, dest=setting.key, default=argparse.SUPPRESS, help=help_text, **kind)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Gate the promotion of an MLflow model.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    validate = commands.add_parser("validate", help="validate one model and write a JUnit report")
    validate.add_argument(
        "model_uri",
        metavar="MODEL_URI",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a directory",
    )
    _add_setting_flags(validate)
    config = commands.add_parser("config", help="print every setting as resolved here, and where it came from")
    _add_setting_flags(config)
    return parser


def _check_writable(path: Path, what: str) -> None:
    """Fail before any work if `path` could not be written; leaves nothing behind."""
    if path.is_dir() and what == "report":
        raise UsageError(f"the {what} path {path} is a directory", "give a file path such as reports/validation.xml")
    if path.exists() and not path.is_dir() and what == "output directory":
        raise UsageError(f"the {what} {path} is a file", "give a directory path such as mlflow-validator-report")
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    problem = f"{ancestor} is not a directory" if not ancestor.is_dir() else ""
    if not problem:
        try:  # permission bits say nothing for root, or on a read-only mount: try it
            Path(tempfile.mkdtemp(prefix=".mlflow-validator-probe-", dir=ancestor)).rmdir()
        except OSError as exc:
            problem = f"{ancestor} is not writable: {exc.strerror}"
    if problem:
        raise UsageError(f"cannot write the {what} to {path} ({problem})", f"choose a writable {what} path")


VERDICT_LINES = {Status.FAILED: "the gate failed", Status.ERROR: "could not validate"}


def _verdict_line(report: ValidationReport) -> str:
    """One line for the CI log's error stream: the first result that decided the exit code."""
    for status in (Status.ERROR, Status.FAILED):
        if first := next((c for c in report.checks if c.status is status), None):
            return f"{VERDICT_LINES[status]}: {first.stage.value} {first.name}: {' '.join(first.message.split())}"
    return ""


def validate(options: Options, env: Mapping[str, str], run_log: RunLog) -> int:
    _check_writable(options.output_dir, "output directory")
    _check_writable(options.junit_path, "report")
    if options.baseline:
        parse_model_uri(options.baseline)
        if Stage.VENV not in options.stages:
            raise UsageError("--baseline compares answers from the venv stage", "add venv to --stages")
    docker_problem = engine_problem(env, options.docker.cli) if Stage.DOCKER in options.stages else ""
    plan = plan_stages(options, docker_problem)
    if docker_problem and not options.given("stages"):
        print(f"warning: skipping the docker stage: no Docker engine reachable ({docker_problem})", file=sys.stderr)
    reporters: list[Reporter] = [ConsoleReporter(), JUnitReporter(options.junit_path)]
    if env.get("GITHUB_ACTIONS") == "true":
        tracking_uri = options.tracking_uri or env.get("MLFLOW_TRACKING_URI", "")
        reporters.append(GitHubReporter(env, tracking_uri))
    pipeline = Pipeline(options, plan, env, reporters, on_report=lambda: run_log.write(options.output_dir))
    report = pipeline.run()
    print(f"JUnit report: {options.junit_path}")
    if verdict := _verdict_line(report):
        print(f"{PROG}: {verdict}", file=sys.stderr)
    if planned := planned_write(report, options, env):
        if options.write_back.dry_run:
            print(f"Registry (dry run, nothing written): {planned.describe()}")
        else:
            write(planned, options)  # a refusal is exit 2; the report already holds the verdict
            print(f"Registry: {planned.describe()}")
    return report.exit_code


def _cancelled_message(options: Options | None) -> str:
    if options is not None and options.keep:
        return f"{PROG}: cancelled; the work directory, containers and images were kept (--keep)"
    return f"{PROG}: cancelled; the containers, images and files it created were removed"


def _write_crash_log(run_log: RunLog, options: Options | None, crash: Exception) -> Path:
    """Next to the report when it can be; else in the temporary directory, so the traceback is never lost."""
    if options is not None:
        with suppress(OSError):
            return run_log.write(options.output_dir, crash=crash)
    return run_log.write(Path(tempfile.mkdtemp(prefix="mlflow-validator-crash-")), crash=crash)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    env = dict(os.environ) if env is None else env
    run_log = RunLog()
    logging.getLogger("validator").addHandler(run_log)
    logging.getLogger("validator").setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    console.setLevel(logging.WARNING)
    logging.getLogger("validator").addHandler(console)
    signal.signal(signal.SIGTERM, commands.cancel)
    signal.signal(signal.SIGINT, commands.cancel)
    options: Options | None = None
    try:
        args: dict[str, Any] = vars(build_parser().parse_args(argv))
        command = args.pop("command")
        options = resolve_options({"model_uri": "", **args}, env, cwd or Path.cwd())
        if options.debug:
            console.setLevel(logging.DEBUG)
        run_log.settings = describe(options)
        if command == "config":
            print(run_log.settings)
            return 0
        return validate(options, env, run_log)
    except ValidatorError as exc:
        logging.getLogger("validator").debug("stopped", exc_info=True)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Cancelled, KeyboardInterrupt):
        print(_cancelled_message(options), file=sys.stderr)
        return EXIT_CANNOT_VALIDATE
    except Exception as exc:
        log_file = _write_crash_log(run_log, options, exc)
        if options is not None and options.debug:
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc}; the traceback is in {log_file}: please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    finally:
        logging.getLogger("validator").removeHandler(run_log)
        logging.getLogger("validator").removeHandler(console)
