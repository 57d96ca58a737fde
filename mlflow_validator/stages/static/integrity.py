"""Integrity: every file MLmodel and its flavors reference is in the model, and nothing is truncated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_validator.results import Outcome, failed, passed
from mlflow_validator.stages.static.context import StaticContext

# Flavor keys whose values are paths relative to the model directory.
PATH_KEYS = frozenset({"data", "code", "model_path", "pickled_model", "python_model", "model_code_path", "model_data"})
# MLflow records the logging machine's absolute path here and loads the file by its name.
BASENAME_KEYS = frozenset({"model_code_path"})
LOG_AGAIN = "the model's artifacts are incomplete: log the model again (or re-upload the missing files)"


def referenced_paths(flavors: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(where in MLmodel, relative path) for every file or directory the flavors reference."""
    found = []
    for flavor, conf in flavors.items():
        for key, value in conf.items():
            if key in PATH_KEYS and isinstance(value, str):
                found.append((f"{flavor}.{key}", Path(value).name if key in BASENAME_KEYS else value))
        for name, env_file in (conf.get("env") or {}).items() if isinstance(conf.get("env"), dict) else []:
            found.append((f"{flavor}.env.{name}", str(env_file)))
        for name, artifact in (conf.get("artifacts") or {}).items() if isinstance(conf.get("artifacts"), dict) else []:
            if isinstance(artifact, dict) and artifact.get("path"):
                found.append((f"{flavor}.artifacts.{name}", str(artifact["path"])))
    return found


def links_leaving(directory: Path) -> list[str]:
    """Links under `directory` whose target is outside it, as "link -> target"; none is followed to find out
    more than where it points."""
    leaving = []
    for parent, dirs, names in os.walk(directory):
        for name in [*dirs, *names]:
            link = Path(parent) / name
            if not link.is_symlink():
                continue
            target = Path(os.readlink(link))
            # A link on the way to the target that leaves is reported in its own right.
            if not Path(os.path.normpath(link.parent / target)).is_relative_to(directory):
                leaving.append(f"{link.relative_to(directory)} -> {target}")
    return leaving


def check_integrity(ctx: StaticContext) -> Outcome:
    files = ctx.files
    if leaving := links_leaving(files.directory):
        return failed(
            f"links that point outside the model directory: {'; '.join(leaving)}. They are never followed: "
            "copy the files they point to into the model and log it again"
        )
    references = referenced_paths(files.mlmodel.flavors)
    missing = [f"{where} -> {path}" for where, path in references if not files.listed(path)]
    truncated = []
    for relative, size in files.listing.items():
        local = files.directory / relative
        if size is not None and local.is_file() and local.stat().st_size != size:
            truncated.append(f"{relative} ({local.stat().st_size} of {size} bytes)")
    unreadable = []
    for local in (files.directory / relative for relative in files.listing):
        if local.is_file():
            try:
                with local.open("rb") as handle:
                    handle.read(1)
            except OSError as exc:
                unreadable.append(f"{local.name} ({exc.strerror})")
    problems = []
    if missing:
        problems.append(f"MLmodel references files that are not in the model: {'; '.join(missing)}")
    if truncated:
        problems.append(f"files smaller than the store lists them: {'; '.join(truncated)}")
    if unreadable:
        problems.append(f"unreadable files: {'; '.join(unreadable)}")
    if problems:
        return failed(f"{'. '.join(problems)}. {LOG_AGAIN}")
    return passed(f"{len(files.listing)} files, {len(references)} references resolved")
