"""`mlflow-validator doctor [MODEL_URI]`: what a validation here needs, found in seconds before any work: uv, the
Docker engine and BuildKit, a cage for the model, the interpreters (the model's own when a URI is given), the
registry, and whether the token may write the verdict back when that is asked for. One line per part; a part
that is asked for and cannot work is a problem, and any problem is exit 2."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.checks import Policy
from mlflow_validator.errors import ValidatorError
from mlflow_validator.model.fetch import fetch_model
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.registry import Registry
from mlflow_validator.results import ModelIdentity, Stage
from mlflow_validator.settings import Options
from mlflow_validator.stages.docker.engine import engine_problem
from mlflow_validator.stages.venv.cage import ENABLE_HINT, cage_problem
from mlflow_validator.stages.venv.interpreter import find_interpreter, minor_of, no_interpreter, search_path
from mlflow_validator.uv import uv_binary
from mlflow_validator.writeback import has_version

MINORS = tuple(f"3.{minor}" for minor in range(9, 15))
PROBE_TAG = "mlflow_validator.doctor"  # set and removed again to learn whether the token may write tags
CREDENTIALS = re.compile(r"(\w+://[^/\s:@]+:)[^@\s/]+@")  # a password in a URL, never printed


@dataclass(frozen=True)
class Finding:
    part: str
    found: str  # what is there, or why it cannot work
    problem: bool = False  # asked for, and cannot work
    fix: str = ""


def _uv() -> tuple[Finding, str]:
    try:
        uv = uv_binary()
        version = commands.run([uv, "--version"], timeout_s=30).output.strip()
    except ValidatorError as exc:
        return Finding("uv", exc.problem, problem=True, fix=exc.fix or "pip install uv"), ""
    return Finding("uv", version), uv


def _engine(options: Options, env: Mapping[str, str]) -> tuple[Finding, bool]:
    problem = engine_problem(env, options.docker.cli)
    # As the validation decides: the default stages skip docker without an engine, named ones (or an alias) need it.
    needed = Stage.DOCKER in options.stages and (options.given("stages") or bool(options.write_back.on_pass_set_alias))
    if problem:
        fix = "or leave docker out of --stages" if needed else ""
        return Finding("docker engine", problem, problem=needed, fix=fix), False
    return Finding("docker engine", f"answers, and `{options.docker.cli}` builds with BuildKit"), True


def _cage(options: Options, env: Mapping[str, str], engine_works: bool) -> Finding:
    wanted = options.sandbox.backend
    bubblewrap = cage_problem(env, os.geteuid()) if wanted != "container" else "not asked for (sandbox.backend)"
    container = "" if engine_works and wanted != "bubblewrap" else "no engine answers, or not asked for"
    if wanted != "container" and not bubblewrap:
        return Finding("cage", "bubblewrap starts here")
    if wanted != "bubblewrap" and not container:
        return Finding("cage", f"a container on the Docker engine (bubblewrap: {bubblewrap})")
    needed = Stage.VENV in options.stages and options.policy("sandbox") is Policy.ERROR  # warn/off run it uncaged
    found = f"neither backend can cage the model (bubblewrap: {bubblewrap}; container: {container})"
    return Finding("cage", found, problem=needed, fix=ENABLE_HINT if needed else "")


def _interpreters(options: Options, uv: str, env: Mapping[str, str], engine_works: bool) -> Finding:
    search = {**env, "PATH": search_path(env), "UV_PYTHON_DOWNLOADS": "never"}
    found = [
        minor
        for minor in MINORS
        if commands.run([uv, "python", "find", "--no-project", minor], env=search, timeout_s=30, check=False).ok
    ]
    here = f"Python {', '.join(found)} on this machine" if found else "none on this machine"
    if options.python.downloads == "auto":
        return Finding("interpreters", f"{here}; uv installs any other (python.downloads: auto)")
    if engine_works and options.sandbox.backend != "bubblewrap":
        return Finding("interpreters", f"{here}; a model of any other runs in a container of its Python")
    return Finding("interpreters", f"{here}; a model of any other cannot be validated here")


def _model(
    options: Options, uv: str, env: Mapping[str, str], engine_works: bool
) -> tuple[list[Finding], ModelIdentity | None]:
    """The registry (reached by fetching the model's small files), the model's Python, and who the model is."""
    with tempfile.TemporaryDirectory(prefix="mlflow-validator-doctor-") as scratch:
        try:
            model = fetch_model(options, Path(scratch) / "model", static_files_only=True)
        except ValidatorError as exc:
            return [Finding("model", exc.problem, problem=True, fix=exc.fix)], None
        found = [Finding("model", f"{model.identity.uri} reached")]
        try:
            version = model.files.python_env.python  # as the venv stage reads it
        except ModelFileError as exc:  # the model's fault: the static stage reports it
            return [*found, Finding("model's Python", f"not known: {exc}")], model.identity
    if version and uv and Stage.VENV in options.stages:
        found.append(_models_python(options, uv, env, version, engine_works))
    return found, model.identity


def _models_python(options: Options, uv: str, env: Mapping[str, str], version: str, engine_works: bool) -> Finding:
    """Where the venv stage will get the model's Python: this machine, uv's download, or a container."""
    name = f"Python {version}"
    interpreter = find_interpreter(uv, version, env, options.timeouts.install)  # never downloads: answers in seconds
    if interpreter is not None:
        return Finding(name, f"{interpreter.path} (Python {interpreter.version})")
    if options.python.downloads == "auto":
        return Finding(name, f"none on this machine: uv will install Python {minor_of(version)} (python.downloads)")
    if engine_works and options.sandbox.backend != "bubblewrap":
        return Finding(name, f"none on this machine: the model will run in a container of python:{version}-slim")
    missing = no_interpreter(version, "no engine answers, or sandbox.backend is bubblewrap")
    return Finding(name, missing.problem, problem=True, fix=missing.fix)


def _may_write(options: Options, identity: ModelIdentity) -> Finding:
    """Set a tag on the model version and remove it: the only way MLflow tells whether a token may write."""
    if not has_version(identity, options):
        return Finding("write-back", "the model is no registered version: nothing is written back")
    registry = Registry.for_options(options)
    client, uri = registry.client, options.model_uri
    name, version = identity.name, identity.version
    fix = "give the token permission to edit this model (MLflow's EDIT), or leave the write-back out"
    try:
        registry.call(partial(client.set_model_version_tag, name, version, PROBE_TAG, "probe"), uri)
    except Exception as exc:
        return Finding("write-back", f"the token may not write tags: {' '.join(str(exc).split())[:200]}", True, fix)
    try:
        registry.call(partial(client.delete_model_version_tag, name, version, PROBE_TAG), uri)
    except Exception as exc:
        found = f"the token may write tags, but removing the probe tag {PROBE_TAG} failed: {exc}"
        return Finding("write-back", found, True, f"remove the tag {PROBE_TAG} from {name} version {version}")
    return Finding("write-back", f"the token may write tags on {name} version {version}")


def diagnose(options: Options, env: Mapping[str, str]) -> list[Finding]:
    uv_found, uv = _uv()
    engine, engine_works = _engine(options, env)
    findings = [uv_found, engine, _cage(options, env, engine_works)]
    if uv:
        findings.append(_interpreters(options, uv, env, engine_works))
    if options.model_uri:
        model, identity = _model(options, uv, env, engine_works)
        findings += model
        asked = options.write_back
        if identity is not None and (asked.enabled or asked.on_pass_set_alias) and not asked.dry_run:
            findings.append(_may_write(options, identity))
    return findings


def rendered(finding: Finding) -> str:
    mark = "MISSING" if finding.problem else "ok"
    fix = f"; {finding.fix}" if finding.fix else ""
    return CREDENTIALS.sub(r"\1***@", f"{mark:>7}  {finding.part:<14} {finding.found}{fix}")
