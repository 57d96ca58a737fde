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

import shtab

from mlflow_validator import PROG, __version__, commands
from mlflow_validator.batch.manifest import DEFAULT_MANIFEST
from mlflow_validator.errors import EXIT_CANNOT_VALIDATE, EXIT_INTERNAL_ERROR, Cancelled, UsageError, ValidatorError
from mlflow_validator.reporters.github import error_on_file
from mlflow_validator.runlog import RunLog
from mlflow_validator.settings import Options, resolve_options
from mlflow_validator.settings.declared import SETTINGS
from mlflow_validator.settings.docs import default_text, describe
from mlflow_validator.settings.types import BOOL, PATH


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; CI logs want one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, f"see `{self.prog} --help`")


# The settings the helper commands read: where the model registry is, and the config file that may say so.
REGISTRY_SETTINGS = frozenset({"config", "tracking_uri", "registry_uri", "debug"})


def _add_setting_flags(parser: argparse.ArgumentParser, only: frozenset[str] | None = None) -> None:
    """A flag per declared setting that has one (of `only`, when given). default=SUPPRESS: a flag the user
    did not give must not hide the config file or the environment."""
    for setting in SETTINGS:
        declaration = setting.declaration
        if not declaration.flag or (only is not None and setting.key not in only):
            continue
        env = f"; env {', '.join(declaration.env)}" if declaration.env else ""
        accepted = f"; {declaration.type.describe}" if declaration.type.metavar else ""
        help_text = f"{declaration.help} (default: {default_text(setting)}{env}{accepted})".replace("%", "%%")
        kind: dict[str, Any] = (
            {"action": argparse.BooleanOptionalAction}  # --push and --no-push: a flag beats the config file either way
            if declaration.type is BOOL
            else {"metavar": declaration.type.metavar or setting.field.upper()}
        )
        flag = parser.add_argument(
            declaration.flag, dest=setting.key, default=argparse.SUPPRESS, help=help_text, **kind
        )
        if declaration.type is PATH:
            flag.complete = shtab.FILE  # type: ignore[attr-defined]  # read by shtab: complete file names


# What to validate, rather than how: these are not settings (no config key, no environment variable).
SELECTION = ("manifest", "base", "entry", "jobs", "format", "component")
COMPONENT = f"$CI_SERVER_FQDN/mlflow-validator/mlflow-validator/validate@{__version__}"


def _add_manifest_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        required=required,
        default=None,
        help=f"the deployment manifest ({DEFAULT_MANIFEST}): environments mapping model names to versions",
    )
    parser.add_argument("--base", metavar="REF", help="only the manifest entries changed since this git ref")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Gate the promotion of an MLflow model.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    validate = commands.add_parser("validate", help="validate models and write a JUnit report")
    validate.add_argument(
        "model_uri",
        metavar="MODEL_URI",
        nargs="*",
        help="models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, models:/m-ID, runs:/RUN_ID/PATH or "
        "a directory; several, or --manifest",
    )
    _add_manifest_flags(validate, required=False)
    validate.add_argument("--entry", metavar="ENV/MODEL", help="only this manifest entry (as `plan` names it)")
    validate.add_argument(
        "--jobs",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="models validated at once when there are several (default: half the cores)",
    )
    _add_setting_flags(validate)
    plan = commands.add_parser("plan", help="print, as JSON for a CI matrix, the manifest entries to validate")
    _add_manifest_flags(plan, required=True)
    plan.add_argument(
        "--format",
        choices=["json", "gitlab"],
        default="json",
        help="json: {include: [...]} for GitHub's strategy.matrix; gitlab: a child pipeline (YAML) for a trigger job",
    )
    plan.add_argument(
        "--component",
        default=COMPONENT,
        help=f"with --format gitlab, the component the child pipeline includes (default: {COMPONENT})",
    )
    _add_setting_flags(plan, only=REGISTRY_SETTINGS)
    init = commands.add_parser("init-checks", help="write an example of the team's own checks for a model")
    init.add_argument("checks_directory", metavar="DIR", type=Path, help="where to write test_model.py")
    init.add_argument("model_uri", metavar="MODEL_URI", nargs="*", help="the model the example is written for")
    _add_setting_flags(init, only=REGISTRY_SETTINGS)
    doctor = commands.add_parser(
        "doctor", help="check in seconds what a validation here needs (engine, cage, Pythons, registry); exit 2 if not"
    )
    doctor.add_argument("model_uri", metavar="MODEL_URI", nargs="*", help="also what this model needs")
    _add_setting_flags(doctor)
    config = commands.add_parser("config", help="print every setting as resolved here, and where it came from")
    _add_setting_flags(config)
    completion = commands.add_parser(
        "completion", help='print a completion script for your shell: eval "$(mlflow-validator completion bash)"'
    )
    completion.add_argument("shell", choices=shtab.SUPPORTED_SHELLS)
    return parser


def _annotate(exc: ValidatorError, env: Mapping[str, str]) -> None:
    """On GitHub, an error about a file of the repository is also an annotation on that file."""
    if env.get("GITHUB_ACTIONS") == "true" and exc.file is not None:
        print(error_on_file(str(exc), exc.file, exc.line, Path(env.get("GITHUB_WORKSPACE", "."))))


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
    logging.getLogger("mlflow_validator").addHandler(run_log)
    logging.getLogger("mlflow_validator").setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    console.setLevel(logging.WARNING)
    logging.getLogger("mlflow_validator").addHandler(console)
    signal.signal(signal.SIGTERM, commands.cancel)
    signal.signal(signal.SIGINT, commands.cancel)
    options: Options | None = None
    try:
        parser = build_parser()
        args: dict[str, Any] = vars(parser.parse_args(argv))
        command = args.pop("command")
        if command == "completion":
            print(shtab.complete(parser, args["shell"]))
            return 0
        selection = {key: args.pop(key, None) for key in SELECTION}
        checks_directory = args.pop("checks_directory", None)
        uris = args.pop("model_uri", [])
        options = resolve_options({"model_uri": uris[0] if len(uris) == 1 else "", **args}, env, cwd or Path.cwd())
        if options.debug:
            console.setLevel(logging.DEBUG)
        run_log.settings = describe(options)
        if command == "config":
            print(run_log.settings)
            return 0
        from mlflow_validator import subcommands  # only now: see its docstring

        if command == "plan":
            return subcommands.plan(options, selection)
        if command == "init-checks":
            return subcommands.init_checks(options, checks_directory)
        if command == "doctor":
            if len(uris) > 1:
                raise UsageError("doctor checks what one model needs", f"run `{PROG} doctor MODEL_URI` for each")
            return subcommands.doctor(options, env)
        if (selection["base"] or selection["entry"]) and not selection["manifest"]:
            raise UsageError("--base and --entry select manifest entries", "add --manifest mlflow-models.yaml")
        if selection["manifest"] or len(uris) > 1:
            if selection["manifest"] and uris:
                raise UsageError(
                    "give model URIs or --manifest, not both", "validate the manifest's models with --manifest"
                )
            return subcommands.validate_several(options, uris, selection, args, env)
        if not uris:
            raise UsageError("no model to validate", "give a MODEL_URI, several, or --manifest mlflow-models.yaml")
        return subcommands.validate(options, env, run_log)
    except ValidatorError as exc:
        logging.getLogger("mlflow_validator").debug("stopped", exc_info=True)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        _annotate(exc, env)
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
        logging.getLogger("mlflow_validator").removeHandler(run_log)
        logging.getLogger("mlflow_validator").removeHandler(console)
