"""Checks over what the model's pickles carry, read as opcodes without loading them (`pickles.py`):
callables that run at load time, environment variables and absolute paths the pickled code reads,
and pickles that the pinned versions cannot load."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from mlflow_validator.model.requirements import pins
from mlflow_validator.results import Outcome, failed, passed, skipped
from mlflow_validator.stages.static.context import StaticContext

MAX_LISTED = 8


def _listed(items: list[str]) -> str:
    more = f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def check_unsafe_pickle(ctx: StaticContext) -> Outcome:
    pickles = ctx.pickles
    if not pickles:
        return skipped("the model has no pickle or skops file")
    unsafe = [f"{p.file}: {what}" for p in pickles for what in p.unsafe]
    unreadable = [f"{p.file}: {p.error}" for p in pickles if p.error]
    untrusted = [f"{p.file}: {', '.join(p.untrusted_types)}" for p in pickles if p.untrusted_types]
    details = "\n".join([*(f"{p.file}: {p.note}" for p in pickles if p.note), *unreadable, *untrusted])
    if unsafe:
        return failed(
            f"loading the model runs commands or code that a model does not need: {_listed(unsafe)}. Nothing was "
            "loaded here; do not load this model anywhere, find out who logged it, and log it again from code "
            "you trust",
            details,
        )
    doubtful = [f"{p.file}: {reason}" for p in pickles for reason in p.unverified]
    if doubtful:
        summary = (
            f"{sum(p.verdict == 'unverified' for p in pickles)} of {len(pickles)} file(s) unverified, which the static "
            f"stage cannot vouch for: they are loaded only inside the cage. {_listed(doubtful)}"
        )
        details = "\n".join([*doubtful, details])
    else:
        summary = (
            f"{len(pickles)} file(s) read to their end: everything they name builds data, nothing runs at load time"
        )
    if vouched := sorted({name for p in pickles for name in p.trusted}):
        summary += f"; trusted by pickles.trusted: {_listed(vouched)}"
    if untrusted:
        summary += f"; skops lists types to trust explicitly when loading: {_listed(untrusted)}"
    return passed(summary, details)


def check_environment_variables(ctx: StaticContext) -> Outcome:
    read = sorted({name for p in ctx.pickles for name in p.env_vars})
    computed = sum(p.computed_env_reads for p in ctx.pickles)
    unread = [f"{p.file}: {p.code_unread}" for p in ctx.pickles if p.code_unread]
    if not read and not computed and unread:
        return skipped(f"not known: {_listed(unread)}")
    # A name computed when the code runs is not guessed: the venv stage runs the model with only what is declared.
    unknown = (
        f"; {computed} read(s) not by a constant name (computed at run time, or the whole environment)"
        if computed
        else ""
    )
    unknown += f"; not known for {_listed(unread)}" if unread else ""
    if not read:
        return passed(f"the pickled code reads no environment variable{unknown}")
    undeclared = [name for name in read if name not in ctx.declared_env]
    if not undeclared:
        return passed(f"the pickled code reads {', '.join(read)}, all declared{unknown}")
    return failed(
        f"the pickled code reads the environment variable(s) {', '.join(undeclared)}, which nobody declared: the "
        f"serving platform must set them. Declare them in mlflow-validator.yaml with "
        f"`env: {{pass: [{', '.join(undeclared)}]}}` (the CI's values) or `env: {{set: {{{undeclared[0]}: <value>}}}}`"
    )


def check_absolute_paths(ctx: StaticContext) -> Outcome:
    found = [f"{p.file}: {path}" for p in ctx.pickles for path in p.absolute_paths]
    if found:
        return failed(
            f"the pickled code uses absolute paths of the machine it was logged on: {_listed(found)}. The serving "
            "image will not have them: log those files with the model as artifacts and read them from the "
            "model's directory (context.artifacts)"
        )
    return passed("the pickled code uses no absolute path")


def _major(version: str) -> int | None:
    try:
        return Version(version).major
    except InvalidVersion:
        return None


def check_pickle_compatibility(ctx: StaticContext) -> Outcome:
    """numpy 2 pickles do not load under numpy 1; cloudpickle pickles do not load across major versions."""
    locked = ctx.lock or pins(ctx.files.requirements)
    problems = []
    numpy = locked.get("numpy", "")
    numpy_2 = [p.file for p in ctx.pickles if p.numpy_core]
    if numpy_2 and _major(numpy) == 1:
        problems.append(
            f"{', '.join(numpy_2)} was pickled under numpy 2 (it references numpy._core), but the requirements "
            f"install numpy {numpy}, which cannot unpickle it: pin numpy>=2 or pickle the model under numpy {numpy}"
        )
    logged_with = ctx.files.mlmodel.python_function.cloudpickle_version
    pinned = locked.get("cloudpickle", "")
    if logged_with and pinned and _major(logged_with) != _major(pinned):
        problems.append(
            f"MLmodel says the model was pickled with cloudpickle {logged_with}, but the requirements install "
            f"cloudpickle {pinned}: pickles do not load across cloudpickle major versions, so pin "
            f"cloudpickle=={logged_with} (`mlflow models update-pip-requirements -m {ctx.model_uri} add "
            f'"cloudpickle=={logged_with}"`)'
        )
    if problems:
        return failed("; ".join(problems))
    return passed(f"numpy {numpy or 'not pinned'}, cloudpickle {pinned or 'not pinned'} load these pickles")
