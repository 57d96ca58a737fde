"""Command line: parse, resolve options, plan, dispatch. No validation logic lives here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mlflow_validator import __version__, commands
from mlflow_validator.batch import Batch, Target, manifest_target
from mlflow_validator.errors import EXIT_CANNOT_VALIDATE, EXIT_INTERNAL_ERROR, Cancelled, UsageError, ValidatorError
from mlflow_validator.expectations.team import EXAMPLE_FILE, example_checks
from mlflow_validator.manifest import (
    DEFAULT_MANIFEST,
    Manifest,
    Registry,
    ResolvedChange,
    gitlab_child_pipeline,
    load_manifest,
    plan_record,
    select,
)
from mlflow_validator.model.fetch import fetch_model, parse_model_uri
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.pipeline import Pipeline
from mlflow_validator.plan import plan_stages
from mlflow_validator.reporters import Reporter
from mlflow_validator.reporters.console import ConsoleReporter
from mlflow_validator.reporters.github import GitHubReporter, error_on_file
from mlflow_validator.reporters.junit import JUnitReporter
from mlflow_validator.reporters.record import RecordReporter
from mlflow_validator.results import Stage, Status, ValidationReport
from mlflow_validator.runlog import RunLog
from mlflow_validator.settings import Options, resolve_options
from mlflow_validator.settings.declared import BY_KEY, SETTINGS
from mlflow_validator.settings.docs import default_text, describe
from mlflow_validator.settings.types import BOOL
from mlflow_validator.stages.docker.engine import engine_problem
from mlflow_validator.writeback import planned_write, write

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
        help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a directory; several, or --manifest",
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
    _add_setting_flags(plan)
    init = commands.add_parser("init-checks", help="write an example of the team's own checks for a model")
    init.add_argument("checks_directory", metavar="DIR", type=Path, help="where to write test_model.py")
    init.add_argument("model_uri", metavar="MODEL_URI", nargs="*", help="the model the example is written for")
    _add_setting_flags(init)
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
    reporters: list[Reporter] = [
        ConsoleReporter(sections=env.get("GITLAB_CI") == "true"),
        JUnitReporter(options.junit_path),
        RecordReporter(options.output_dir),
    ]
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


def _manifest_changes(selection: Mapping[str, Any], options: Options) -> tuple[Manifest, list[ResolvedChange]]:
    manifest = load_manifest(selection["manifest"])
    changes = select(manifest, selection["entry"], selection["base"])
    registry = Registry.for_options(options)
    return manifest, [ResolvedChange(registry.resolve(c.entry, manifest.path), c.reasons) for c in changes]


def plan(options: Options, selection: Mapping[str, Any]) -> int:
    manifest, changes = _manifest_changes(selection, options)
    records = [plan_record(change, manifest) for change in changes]
    if selection["format"] == "gitlab":
        print(yaml.safe_dump(gitlab_child_pipeline(records, manifest, selection["component"]), sort_keys=False))
    else:
        print(json.dumps({"include": records}))
    return 0


def _child_flags(given: Mapping[str, Any]) -> list[str]:
    """The setting flags given on this command line, for each model's own validation."""
    flags: list[str] = []
    for key, value in given.items():
        if key in ("output_dir", "junit_xml"):
            continue  # each model gets a directory of its own; the merged report is this run's
        flag = BY_KEY[key].declaration.flag
        flags += [flag] if BY_KEY[key].declaration.type is BOOL else [flag, str(value)]
    return flags


def validate_several(
    options: Options, uris: list[str], selection: Mapping[str, Any], given: Mapping[str, Any], env: Mapping[str, str]
) -> int:
    _check_writable(options.output_dir, "output directory")
    _check_writable(options.junit_path, "report")
    if selection["manifest"]:
        manifest, changes = _manifest_changes(selection, options)
        targets = [manifest_target(manifest, change) for change in changes]
        if not targets:
            print(f"Nothing to validate: no entry of {manifest.path} changed since {selection['base']}")
    else:
        for uri in uris:
            parse_model_uri(uri)
        if len(set(uris)) < len(uris):
            raise UsageError("a model URI is given twice", "name each model once")
        targets = [Target(uri, uri) for uri in uris]
    tracking_uri = options.tracking_uri or env.get("MLFLOW_TRACKING_URI", "")
    batch = Batch(
        targets, _child_flags(given), options.output_dir, options.junit_path, env, selection["jobs"], tracking_uri
    )
    return batch.run()


def init_checks(options: Options, directory: Path) -> int:
    """test_model.py in `directory`, written for the model's signature (fetched, small files only)."""
    if not options.model_uri:
        raise UsageError("init-checks writes its example for one model", f"run `{PROG} init-checks DIR MODEL_URI`")
    target = directory / EXAMPLE_FILE
    if target.exists():
        raise UsageError(f"{target} exists", "choose another directory, or remove the file")
    with tempfile.TemporaryDirectory(prefix="mlflow-validator-") as scratch:
        model = fetch_model(options, Path(scratch) / "model", static_files_only=True)
        try:
            inputs = model.files.mlmodel.signature.inputs
        except ModelFileError as exc:
            raise UsageError(f"cannot read {options.model_uri}: {exc}", "validate the model to see why") from None
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(example_checks(options.model_uri, directory, inputs))
    print(f"wrote {target}: run it with `{PROG} validate {options.model_uri} --checks {directory}`")
    return 0


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
        args: dict[str, Any] = vars(build_parser().parse_args(argv))
        command = args.pop("command")
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
        if command == "plan":
            return plan(options, selection)
        if command == "init-checks":
            return init_checks(options, checks_directory)
        if (selection["base"] or selection["entry"]) and not selection["manifest"]:
            raise UsageError("--base and --entry select manifest entries", "add --manifest mlflow-models.yaml")
        if selection["manifest"] or len(uris) > 1:
            if selection["manifest"] and uris:
                raise UsageError(
                    "give model URIs or --manifest, not both", "validate the manifest's models with --manifest"
                )
            return validate_several(options, uris, selection, args, env)
        if not uris:
            raise UsageError("no model to validate", "give a MODEL_URI, several, or --manifest mlflow-models.yaml")
        return validate(options, env, run_log)
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
