"""Read every pickle in a model without loading it: what it calls, imports and reads when it is loaded.

fickling decompiles a pickle into Python (`from posix import system; _var0 = system('ls')`) without running it; the
decompiled module is read like source: its imports are the pickle's globals, its calls what the unpickler would call.
The bytecode of code objects that cloudpickle carries by value is decoded (never run, nor made a code object).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fickling.fickle import InterpreterLimits

from mlflow_validator.stages.static.pickles.bytecode import NAME_LOADS as NAME_LOADS
from mlflow_validator.stages.static.pickles.bytecode import _instructions as _instructions
from mlflow_validator.stages.static.pickles.bytecode import code_facts
from mlflow_validator.stages.static.pickles.judge import MAX_RENDERED as MAX_RENDERED
from mlflow_validator.stages.static.pickles.judge import is_unsafe_global as is_unsafe_global
from mlflow_validator.stages.static.pickles.judge import unsafe
from mlflow_validator.stages.static.pickles.program import read_program
from mlflow_validator.stages.static.pickles.stream import Decompiled, NotRead, decompile, decompressed
from mlflow_validator.stages.static.pickles.stream import _Feed as _Feed

__all__ = ["PickleFindings", "analyze_model", "analyze_pickle", "is_unsafe_global", "pickle_files"]
# The tests also reach NAME_LOADS, MAX_RENDERED, _Feed and _instructions through the package (imported `as`
# themselves above).

# The limits of one reading. They live here and are passed down to the stream at each reading, so that lowering
# them on the package (as the tests do) takes effect.
MAX_DECOMPILED_BYTES = 512 * 1024**2
MAX_DECOMPRESSED_BYTES = 2 * 1024**3
# fickling's defaults: a million opcodes take fickling about ten seconds.
INTERPRETER_LIMITS = InterpreterLimits()

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".cloudpickle"})
SKOPS_SUFFIX = ".skops"
PICKLE_MARKER = b"\x80"  # PROTO, the first opcode of every pickle of protocol 2 or later


@dataclass(frozen=True)
class PickleFindings:
    file: str  # relative to the model directory, e.g. "python_model.pkl"
    kind: str  # "pickle" or "skops"
    globals: tuple[str, ...]  # "module.name" for every global the file imports, in order of appearance, unique
    unsafe: tuple[str, ...]  # one description per unsafe import/call, e.g. "posix.system('touch /tmp/x')"
    imports: tuple[str, ...]  # modules the pickled code imports, unique, sorted
    env_vars: tuple[str, ...]  # environment variables the pickled code reads, unique, sorted
    absolute_paths: tuple[str, ...]  # unique, sorted
    untrusted_types: tuple[str, ...]  # skops only
    numpy_core: bool  # references numpy._core (numpy 2 internals)
    note: str = ""  # e.g. "bytecode of Python 3.10 not read on 3.11", "array data not read"
    error: str = ""  # the file could not be read as a pickle


def _unread(file: str, kind: str, note: str = "", error: str = "") -> PickleFindings:
    return PickleFindings(file, kind, (), (), (), (), (), (), False, note=note, error=error)


# Which files -------------------------------------------------------------------------------------------------


def _starts_like_pickle(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(1) == PICKLE_MARKER
    except OSError:
        return False  # the integrity check reports unreadable files


def pickle_files(model_dir: Path) -> list[Path]:
    """Every pickle (by suffix or by its first byte) and skops file in the model directory, sorted."""
    found = []
    for path in sorted(model_dir.rglob("*")):
        # A symlink can point anywhere on the validating machine; only the model's own files are read.
        if path.is_symlink() or not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES or suffix == SKOPS_SUFFIX or _starts_like_pickle(path):
            found.append(path)
    return found


# Public entry points -----------------------------------------------------------------------------------------


def _findings(relative: str, decompiled: Decompiled, python_version: str) -> PickleFindings:
    program = read_program(decompiled.body)
    facts = code_facts(program, python_version)
    globals_ = tuple(dict.fromkeys(f"{m}.{n}" for _, m, n in program.imports if not n.startswith("<")))
    return PickleFindings(
        file=relative,
        kind="pickle",
        globals=globals_,
        unsafe=unsafe(program),
        imports=tuple(sorted(set(program.modules) | facts.imports)),
        env_vars=tuple(sorted(facts.env_vars)),
        absolute_paths=tuple(sorted(facts.paths)),
        untrusted_types=(),
        numpy_core=any(g.startswith("numpy._core.") for g in globals_),
        note="; ".join(n for n in (decompiled.note, facts.note) if n),
        error=decompiled.error,
    )


def _merged(first: PickleFindings, second: PickleFindings) -> PickleFindings:
    """`first`, with what `second` (another reading of the same file) adds."""

    def ordered(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a + b))

    return PickleFindings(
        file=first.file,
        kind=first.kind,
        globals=ordered(first.globals, second.globals),
        unsafe=ordered(first.unsafe, second.unsafe),
        imports=tuple(sorted({*first.imports, *second.imports})),
        env_vars=tuple(sorted({*first.env_vars, *second.env_vars})),
        absolute_paths=tuple(sorted({*first.absolute_paths, *second.absolute_paths})),
        untrusted_types=first.untrusted_types,
        numpy_core=first.numpy_core or second.numpy_core,
        note=first.note,
        error=first.error,
    )


def _analyze_skops(path: Path, relative: str) -> PickleFindings:
    # skops.io imports scikit-learn to list the types it trusts (about two seconds): paid only for skops files.
    from skops.io import get_untrusted_types

    try:
        untrusted = get_untrusted_types(file=path)
    except Exception as exc:  # a damaged or hostile archive can make skops raise anything
        return _unread(relative, "skops", error=f"not a skops file: {type(exc).__name__}: {exc}")
    return PickleFindings(relative, "skops", (), (), (), (), (), tuple(untrusted), False)


def analyze_pickle(path: Path, model_dir: Path, python_version: str) -> PickleFindings:
    """What one pickle (or skops file) of the model imports, calls and reads when loaded; nothing is loaded."""
    relative = path.relative_to(model_dir).as_posix()
    if path.suffix.lower() == SKOPS_SUFFIX:
        return _analyze_skops(path, relative)
    size = path.stat().st_size
    if size > MAX_DECOMPILED_BYTES:
        return _unread(
            relative, "pickle", note=f"not read: {size} bytes, more than the {MAX_DECOMPILED_BYTES} decompiled"
        )
    try:
        data = decompressed(path.read_bytes(), MAX_DECOMPRESSED_BYTES)
    except NotRead as exc:
        return _unread(relative, "pickle", note=str(exc))
    except (OSError, ValueError) as exc:
        return _unread(relative, "pickle", error=str(exc))
    if not data:
        return _unread(relative, "pickle", error="not a pickle: the file is empty")
    decompiled = decompile(data, joblib=True, limits=INTERPRETER_LIMITS)
    findings = _findings(relative, decompiled, python_version)
    if decompiled.arrays:
        # pickle.load, unlike joblib.load, reads what follows an array wrapper as opcodes: a made-up wrapper must
        # not hide them. On a real joblib file this reading stops at the first array.
        as_pickle_load = decompile(data, joblib=False, limits=INTERPRETER_LIMITS)
        findings = _merged(findings, _findings(relative, as_pickle_load, python_version))
    return findings


def analyze_model(model_dir: Path, python_version: str) -> list[PickleFindings]:
    """Findings for every pickle and skops file in the model directory, sorted by path."""
    return [analyze_pickle(path, model_dir, python_version) for path in pickle_files(model_dir)]
