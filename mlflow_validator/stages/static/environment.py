"""The environment files agree with each other and with MLmodel; every requirement is pinned."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.requirements import Kind, RequirementLine, parse_requirements, pins
from mlflow_validator.results import Outcome, failed, passed
from mlflow_validator.stages.static.context import StaticContext

BUILD_TIME_NEEDS = {
    Kind.VCS: "the VCS tool (git) and network access to that host at build time",
    Kind.URL: "network access to that URL at build time",
    Kind.PATH: "that file inside the model or the build context",
    Kind.INDEX_OPTION: "that index at build time (both stages use it; its credentials, if any, are in the registry)",
    Kind.OTHER_OPTION: "a pip option the serving build may not honour",
    Kind.INVALID: "fixing: it is not a valid requirement",
}


def _conda_python(conda: Mapping[str, Any]) -> str:
    for dependency in conda.get("dependencies") or []:
        if isinstance(dependency, str) and (match := re.match(r"^python\s*=+\s*([\d.]+)$", dependency)):
            return match.group(1)
    return ""


def _conda_pip_lines(conda: Mapping[str, Any]) -> list[str]:
    for dependency in conda.get("dependencies") or []:
        if isinstance(dependency, dict) and isinstance(dependency.get("pip"), list):
            return [str(line) for line in dependency["pip"]]
    return []


def _mlflow_major_mismatch(logged_with: str, lines: list[RequirementLine]) -> str:
    installed = pins(lines).get("mlflow") or pins(lines).get("mlflow-skinny")
    if not logged_with or not installed:
        return ""
    try:
        if Version(logged_with).major != Version(installed).major:
            return f"the model was logged with MLflow {logged_with} but its requirements install MLflow {installed}"
    except InvalidVersion:
        return ""
    return ""


def check_agreement(ctx: StaticContext) -> Outcome:
    python_env = ctx.files.python_env
    lines = ctx.files.requirements
    conda = ctx.files.conda
    mlmodel = ctx.files.mlmodel
    uri = shlex.quote(ctx.model_uri)
    problems = []
    versions = {
        "python_env.yaml": python_env.python,
        "conda.yaml": _conda_python(conda),
        "MLmodel": mlmodel.python_function.python_version,
    }
    if len({v for v in versions.values() if v}) > 1:
        described = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
        problems.append(
            f"the Python versions differ ({described}): the serving image uses python_env.yaml's; "
            "log the model again from the Python it was trained with"
        )
    conda_pins = {line.text for line in parse_requirements("\n".join(_conda_pip_lines(conda)))}
    requirement_pins = {line.text for line in lines}
    if conda and conda_pins != requirement_pins:
        problems.append(
            "requirements.txt and conda.yaml differ "
            f"(only in requirements.txt: {sorted(requirement_pins - conda_pins)}, "
            f"only in conda.yaml: {sorted(conda_pins - requirement_pins)}): "
            f"`mlflow models update-pip-requirements -m {uri} add|remove ...` updates both"
        )
    if mismatch := _mlflow_major_mismatch(mlmodel.mlflow_version, lines):
        problems.append(
            f"{mismatch}: a model must be served by the MLflow major version it was logged with; "
            f'`mlflow models update-pip-requirements -m {uri} add "mlflow=={mlmodel.mlflow_version}"`'
        )
    if problems:
        return failed("; ".join(problems))
    return passed(f"Python {python_env.python}; {len(lines)} requirements agree across the environment files")


def check_pinned(ctx: StaticContext) -> Outcome:
    lines = ctx.files.requirements
    uri = shlex.quote(ctx.model_uri)
    unpinned = [line for line in lines if line.kind is Kind.UNPINNED]
    special = [line for line in lines if line.kind in BUILD_TIME_NEEDS]
    messages = []
    if unpinned:
        fixes = " ".join(f'"{line.name}=={ctx.lock[line.name]}"' for line in unpinned if line.name in ctx.lock)
        suggestion = (
            f"pin them to what was validated: `mlflow models update-pip-requirements -m {uri} add {fixes}`"
            if fixes
            else f'pin them with `mlflow models update-pip-requirements -m {uri} add "name==version"`'
        )
        messages.append(f"not pinned with ==: {', '.join(line.display for line in unpinned)}; {suggestion}")
    for line in special:
        messages.append(f"{line.display} needs {BUILD_TIME_NEEDS[line.kind]}")
    if messages:
        return failed(". ".join(messages), "\n".join(line.text for line in lines))
    return passed(f"all {len(lines)} requirements pinned")


def check_environment_files(ctx: StaticContext) -> Outcome:
    try:
        env = ctx.files.python_env
    except ModelFileError as exc:
        return failed(f"{exc}; log the model with a recent MLflow, which writes python_env.yaml and requirements.txt")
    return passed(f"Python {env.python}, requirements in {env.requirements_file.name}")
