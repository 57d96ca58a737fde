"""Command line: parse, resolve options, plan, dispatch. No validation logic lives here."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from validator import __version__
from validator.docker.engine import engine_problem
from validator.errors import EXIT_CANNOT_VALIDATE, EXIT_INTERNAL_ERROR, Cancelled, UsageError, ValidatorError
from validator.fetch import parse_model_uri
from validator.options import Options, resolve_options
from validator.pipeline import Pipeline, Reporter
from validator.plan import plan_stages
from validator.reporters.console import ConsoleReporter
from validator.reporters.junit import JUnitReporter
from validator.results import Stage

PROG = "mlflow-validator"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; CI logs want one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"see `{PROG} {self.prog.split()[-1]} --help`")


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
    # default=SUPPRESS: a flag the user did not give must not hide the config file or env.

    def add(*names: str, **kwargs: Any) -> None:
        validate.add_argument(*names, default=argparse.SUPPRESS, **kwargs)

    add("--tracking-uri", dest="tracking_uri", help="MLflow tracking server (default: MLFLOW_TRACKING_URI)")
    add(
        "--registry-uri",
        dest="registry_uri",
        help="model registry, if not the tracking server (default: MLFLOW_REGISTRY_URI)",
    )
    add("--stages", dest="stages", help="comma-separated subset of static,venv,docker (default: all)")
    add("--junit-xml", dest="junit_xml", help="report path (default: OUTPUT_DIR/junit.xml)")
    add("--output-dir", dest="output_dir", help="predictions, responses and logs (default: mlflow-validator-report)")
    add("--config", dest="config", help="YAML config file (default: ./mlflow-validator.yaml if present)")
    add(
        "--ca-bundle",
        dest="build.ca_bundle",
        help="PEM CA bundle for installs (default: PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE)",
    )
    add("--index-url", dest="build.index_url", help="package index for installs (default: PIP_INDEX_URL, UV_INDEX_URL)")
    add("--constraints", dest="constraints", help="the serving runtime's installed packages (name==version lines)")
    add(
        "--requests",
        dest="requests.directory",
        help="directory of sample requests (*.json, *.csv), each optionally with NAME.expected.json",
    )
    add("--baseline", dest="baseline", help="a model URI to compare answers with, e.g. models:/NAME@champion")
    add("--rtol", dest="tolerance.rtol", help="relative tolerance for floats (default: 1e-6)")
    add("--atol", dest="tolerance.atol", help="absolute tolerance for floats (default: 1e-9)")
    add("--keep", dest="keep", action="store_true", help="keep the work directory, image and container for debugging")
    validate.add_argument("--debug", action="store_true", help="log every command and show tracebacks")
    return parser


def _check_writable(path: Path, what: str) -> None:
    """Fail before any work if `path` could not be written; creates nothing."""
    if path.is_dir() and what == "report":
        raise UsageError(f"the {what} path {path} is a directory", "give a file path such as reports/validation.xml")
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write the {what} to {path} ({ancestor} is not writable)", f"choose a writable {what} path"
        )


def _raise_cancelled(signum: int, frame: FrameType | None) -> None:
    raise Cancelled()


def validate(options: Options, env: Mapping[str, str]) -> int:
    _check_writable(options.junit_path, "report")
    _check_writable(options.output_dir, "output directory")
    if options.baseline_uri:
        parse_model_uri(options.baseline_uri)
        if Stage.VENV not in options.stages:
            raise UsageError("--baseline compares answers from the venv stage", "add venv to --stages")
    docker_problem = engine_problem(env) if Stage.DOCKER in options.stages else ""
    plan = plan_stages(options, docker_problem)
    if docker_problem and not options.stages_explicit:
        print(f"warning: skipping the docker stage: no Docker engine reachable ({docker_problem})", file=sys.stderr)
    reporters: list[Reporter] = [ConsoleReporter(), JUnitReporter(options.junit_path)]
    report = Pipeline(options, plan, env, reporters).run()
    print(f"JUnit report: {options.junit_path}")
    return report.exit_code


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _raise_cancelled)
    try:
        args: dict[str, Any] = vars(build_parser().parse_args(argv))
        config = Path(args.pop("config")) if "config" in args else None
        return validate(resolve_options(args, env, config), env)
    except ValidatorError as exc:
        if debug:
            logging.exception("details")
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (Cancelled, KeyboardInterrupt):
        print(f"{PROG}: cancelled; the containers, images and files it created were removed", file=sys.stderr)
        return EXIT_CANNOT_VALIDATE
    except Exception as exc:
        if debug:
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {exc}; rerun with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
