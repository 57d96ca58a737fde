"""What each subcommand does, once the command line is parsed. Imported by the CLI only then: MLflow,
which these need, takes seconds to import, and `--help` or a usage error needs none of it."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from mlflow_validator import PROG
from mlflow_validator.batch.manifest import (
    Manifest,
    ResolvedChange,
    gitlab_child_pipeline,
    load_manifest,
    plan_record,
    resolve_entry,
    select,
)
from mlflow_validator.batch.run import Batch, Target, manifest_target
from mlflow_validator.doctor import diagnose, rendered
from mlflow_validator.errors import EXIT_CANNOT_VALIDATE, Cancelled, UsageError, ValidatorError
from mlflow_validator.expectations.team import EXAMPLE_FILE, example_checks
from mlflow_validator.model.fetch import ModelReference, fetch_model, parse_model_uri
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.registry import Registry
from mlflow_validator.pipeline import Pipeline
from mlflow_validator.plan import plan_stages
from mlflow_validator.reporters import Reporter
from mlflow_validator.reporters.console import ConsoleReporter, one_printable_line
from mlflow_validator.reporters.github import GitHubReporter, append_summary
from mlflow_validator.reporters.junit import JUnitReporter
from mlflow_validator.reporters.markdown import MarkdownReporter
from mlflow_validator.reporters.record import RecordReporter
from mlflow_validator.results import SELECTABLE_STAGES, Stage, Status, ValidationReport
from mlflow_validator.runlog import RunLog
from mlflow_validator.settings import Options
from mlflow_validator.settings.declared import BY_KEY
from mlflow_validator.settings.types import BOOL
from mlflow_validator.stages.docker.engine import engine_problem
from mlflow_validator.writeback import planned_write, write


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


def ci_folds(env: Mapping[str, str]) -> str:
    """Which CI's collapsible sections the console draws: GitLab's, GitHub's, or none."""
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return "github" if env.get("GITHUB_ACTIONS") == "true" else ""


# MLflow's rules for an alias: `latest` and `v<digits>` name versions already.
VALID_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)
VERDICT_LINES = {Status.FAILED: "the gate failed", Status.ERROR: "could not validate"}


def _verdict_line(report: ValidationReport) -> str:
    """One line for the CI log's error stream: the first result that decided the exit code."""
    for status in (Status.ERROR, Status.FAILED):
        if first := next((c for c in report.checks if c.status is status), None):
            return f"{VERDICT_LINES[status]}: {first.stage.value} {first.name}: {one_printable_line(first.message)}"
    return ""


def _registered(reference: ModelReference) -> bool:
    """A registered model's version (by number, alias or `latest`): what an alias can point at."""
    return bool(reference.name) and reference.local_path is None


def validate(options: Options, env: Mapping[str, str], run_log: RunLog) -> int:
    _check_writable(options.output_dir, "output directory")
    _check_writable(options.junit_path, "report")
    if options.baseline:
        parse_model_uri(options.baseline)
        if Stage.VENV not in options.stages:
            raise UsageError("--baseline compares answers from the venv stage", "add venv to --stages")
    alias = options.write_back.on_pass_set_alias
    if alias and (not VALID_ALIAS.fullmatch(alias) or RESERVED_ALIAS.fullmatch(alias)):
        raise UsageError(
            f"--on-pass-set-alias {alias!r} is no alias MLflow accepts",
            "use letters, digits, - and _ (not `latest`, nor v followed by digits)",
        )
    if alias and not _registered(parse_model_uri(options.model_uri)):
        raise UsageError(
            f"--on-pass-set-alias moves an alias of a registered model, and {options.model_uri} is none "
            "(a logged model, a run or a directory)",
            "register the model (mlflow.register_model) and validate models:/NAME/VERSION",
        )
    if options.write_back.on_pass_set_alias and set(options.stages) != set(SELECTABLE_STAGES):
        raise UsageError(
            f"--on-pass-set-alias promotes only a model that every stage validated, and --stages names "
            f"{','.join(stage.value for stage in options.stages)}",
            "run every stage (leave --stages out), or leave --on-pass-set-alias out",
        )
    docker_problem = engine_problem(env, options.docker.cli) if Stage.DOCKER in options.stages else ""
    plan = plan_stages(options, docker_problem)
    if docker_problem and not options.given("stages"):
        print(f"warning: skipping the docker stage: no Docker engine reachable ({docker_problem})", file=sys.stderr)
    tracking_uri = options.tracking_uri or env.get("MLFLOW_TRACKING_URI", "")
    records: list[Reporter] = [RecordReporter(options.output_dir), MarkdownReporter(options.output_dir, tracking_uri)]
    reporters: list[Reporter] = [
        ConsoleReporter(folds=ci_folds(env), quiet=options.quiet),
        JUnitReporter(options.junit_path),
        *records,
    ]
    if env.get("GITHUB_ACTIONS") == "true":
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
            try:
                write(planned, options)
            except (ValidatorError, Cancelled) as exc:  # exit 2: the records say so too, with the verdict they hold
                report.write_back_error = str(exc) or "cancelled while writing the verdict back"
                for record in records:
                    record.report_finished(report)
                if env.get("GITHUB_ACTIONS") == "true":
                    append_summary(env, f"\n💥 The verdict could not be written back: {report.write_back_error}\n")
                raise
            print(f"Registry: {planned.describe()}")
    return report.exit_code


def _manifest_changes(selection: Mapping[str, Any], options: Options) -> tuple[Manifest, list[ResolvedChange]]:
    manifest = load_manifest(selection["manifest"])
    changes = select(manifest, selection["entry"], selection["base"])
    registry = Registry.for_options(options)
    return manifest, [ResolvedChange(resolve_entry(registry, c.entry, manifest.path), c.reasons) for c in changes]


def _python_of(options: Options, model_uri: str) -> str:
    """The Python the model was logged with (its python_env.yaml), for the matrix job to set up; empty when the
    model does not say, which its validation then reports."""
    with tempfile.TemporaryDirectory(prefix="mlflow-validator-plan-") as scratch:
        model = fetch_model(replace(options, model_uri=model_uri), Path(scratch) / "model", static_files_only=True)
        try:
            return model.files.python_env.python
        except ModelFileError:
            return ""


def plan(options: Options, selection: Mapping[str, Any]) -> int:
    manifest, changes = _manifest_changes(selection, options)
    records = [
        plan_record(change, manifest) | {"python": _python_of(options, change.resolved.model_uri)} for change in changes
    ]
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
        if BY_KEY[key].declaration.type is BOOL:
            flags.append(flag if value else f"--no-{flag.removeprefix('--')}")
        else:
            flags += [flag, str(value)]
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


def doctor(options: Options, env: Mapping[str, str]) -> int:
    findings = diagnose(options, env)
    for finding in findings:
        print(rendered(finding))
    problems = [finding for finding in findings if finding.problem]
    if problems:
        parts = ", ".join(problem.part for problem in problems)
        print(f"{PROG}: what this validation needs cannot work here: {parts}", file=sys.stderr)
        return EXIT_CANNOT_VALIDATE
    print(f"{PROG}: everything this validation needs works here")
    return 0
