"""Read every pickle in a model without loading it: what it calls, imports and reads when it is loaded.

fickling decompiles a pickle into Python (`from posix import system; _var0 = system('ls')`) without running it; the
decompiled module is read like source: its imports are the pickle's globals, its calls what the unpickler would call.
The bytecode of code objects that cloudpickle carries by value is decoded (never run, nor made a code object).
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fickling.fickle import InterpreterLimits
from numpy.lib import format as npy_format

from mlflow_validator.stages.static.pickles.bytecode import NAME_LOADS as NAME_LOADS
from mlflow_validator.stages.static.pickles.bytecode import _instructions as _instructions
from mlflow_validator.stages.static.pickles.bytecode import code_facts
from mlflow_validator.stages.static.pickles.judge import MAX_RENDERED as MAX_RENDERED
from mlflow_validator.stages.static.pickles.judge import is_unsafe_global as is_unsafe_global
from mlflow_validator.stages.static.pickles.judge import unsafe, unverified
from mlflow_validator.stages.static.pickles.program import read_program
from mlflow_validator.stages.static.pickles.stream import Decompiled, NotRead, decompile, decompressed, is_compressed
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
PICKLE_MARKER = b"\x80"  # PROTO, the first opcode of every pickle of protocol 2 or later when it has one
NPY_MAGIC = b"\x93NUMPY"  # .npy: a header, then the array's bytes, or a pickle of them for an object array
ZIP_MAGIC = b"PK\x03\x04"  # .npz: .npy files in a zip
SNIFF_BYTES = 1024**2  # how far a file of any name is read as opcodes to tell whether it is a pickle


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
    note: str = ""  # e.g. "bytecode of Python 3.10 not read: ...", "array data not read"
    error: str = ""  # the file could not be read as a pickle
    # Why the static stage cannot vouch for it: outside the allow-list, or not read to its end.
    unverified: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()  # globals accepted because the team vouches for their module (pickles.trusted)
    computed_env_reads: int = 0  # reads of the environment whose name the pickled code computes when it runs
    code_unread: str = ""  # why pickled code was not read: what it imports and reads is not known

    @property
    def verdict(self) -> str:
        return "unsafe" if self.unsafe else "unverified" if self.unverified else "safe"


def _unread(file: str, kind: str, note: str = "", error: str = "") -> PickleFindings:
    """A file not read (to its end): never `safe`."""
    return PickleFindings(
        file, kind, (), (), (), (), (), (), False, note=note, error=error, unverified=(note or error,)
    )


# Which files -------------------------------------------------------------------------------------------------


def _parses_as_pickle(head: bytes) -> bool:
    """Whether the file's start reads as pickle opcodes up to a STOP, or for all of SNIFF_BYTES: a pickle of
    any protocol, with or without PROTO, whatever the file is called (a loader unpickles it all the same)."""
    opcodes = 0
    try:
        for info, _, _ in pickletools.genops(io.BytesIO(head)):
            opcodes += 1
            if info.name == "STOP":
                return opcodes > 1
    except ValueError as exc:  # an unknown opcode ends it; an argument longer than the sniff read may be a pickle's
        return len(head) == SNIFF_BYTES and "unknown" not in str(exc)
    return False


def _kind(path: Path) -> str:
    """ "pickle", "skops", "npy", "npz" or "" (no pickle in it), from the suffix and the content."""
    suffix = path.suffix.lower()
    if suffix == SKOPS_SUFFIX:
        return "skops"
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return ""  # the integrity check reports unreadable files
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC):
        return "npz" if _npz_members(path) else ""
    # Compressed (joblib's compress=, whatever the file is called): read as a pickle once decompressed.
    compressed = is_compressed(head)
    if suffix in PICKLE_SUFFIXES or head[:1] == PICKLE_MARKER or compressed or _parses_as_pickle(head):
        return "pickle"
    return ""


def pickle_files(model_dir: Path) -> list[Path]:
    """Every file of the model directory that holds a pickle (by its suffix or its content: a pickle of any
    protocol, a .npy or .npz array) and every skops file, sorted."""
    found = []
    for path in sorted(model_dir.rglob("*")):
        # A symlink can point anywhere on the validating machine; only the model's own files are read.
        if not path.is_symlink() and path.is_file() and _kind(path):
            found.append(path)
    return found


def _npz_members(path: Path) -> list[str]:
    """The members numpy.load would read as arrays: every one that is a .npy, whatever it is called."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = []
            for name in archive.namelist():
                with archive.open(name) as member:
                    if member.read(len(NPY_MAGIC)) == NPY_MAGIC:
                        members.append(name)
            return members
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return []


def _npy_pickle(data: bytes) -> bytes | None:
    """The pickle an object array's .npy holds after its header; None when the array holds no object."""
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        _, _, dtype = read_header(stream)
    except (ValueError, OSError) as exc:
        raise ValueError(f"not a .npy file: {exc}") from exc
    return data[stream.tell() :] if dtype.hasobject else None


# Public entry points -----------------------------------------------------------------------------------------


def _findings(
    relative: str, decompiled: Decompiled, python_version: str, trusted: Sequence[str], *, whole: bool = True
) -> PickleFindings:
    """`whole`: the reading must reach the end, or the pickle is unverified (pickle.load's second reading of a
    joblib file does not: it stops at the first array's data, as pickle.load itself would)."""
    program = read_program(decompiled.body)
    facts = code_facts(program, python_version)
    doubts, vouched = unverified(program, trusted)
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
        note="; ".join(n for n in (decompiled.note, facts.unread) if n),
        error=decompiled.error,
        # A reading that stopped early vouches for nothing after where it stopped.
        unverified=tuple(r for r in (decompiled.note, decompiled.error if whole else "") if r) + doubts,
        trusted=vouched,
        computed_env_reads=facts.computed_env_reads,
        code_unread=facts.unread,
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
        unverified=ordered(first.unverified, second.unverified),
        trusted=ordered(first.trusted, second.trusted),
        computed_env_reads=max(first.computed_env_reads, second.computed_env_reads),
        code_unread=first.code_unread or second.code_unread,
    )


def _analyze_skops(path: Path, relative: str) -> PickleFindings:
    # skops.io imports scikit-learn to list the types it trusts (about two seconds): paid only for skops files.
    from skops.io import get_untrusted_types

    try:
        untrusted = get_untrusted_types(file=path)
    except Exception as exc:  # a damaged or hostile archive can make skops raise anything
        return _unread(relative, "skops", error=f"not a skops file: {type(exc).__name__}: {exc}")
    return PickleFindings(relative, "skops", (), (), (), (), (), tuple(untrusted), False)


def analyze_pickle(
    path: Path, model_dir: Path, python_version: str, trusted: Sequence[str] = ()
) -> list[PickleFindings]:
    """What one file of the model imports, calls and reads when loaded (an .npz: each of its object arrays);
    nothing is loaded."""
    relative = path.relative_to(model_dir).as_posix()
    kind = _kind(path)
    if kind == "skops":
        return [_analyze_skops(path, relative)]
    size = path.stat().st_size
    if size > MAX_DECOMPILED_BYTES:
        note = f"not read: {size} bytes, more than the {MAX_DECOMPILED_BYTES} decompiled"
        return [_unread(relative, "pickle", note=note)]
    if kind == "npz":
        with zipfile.ZipFile(path) as archive:
            members = [(f"{relative}/{name}", archive.read(name)) for name in _npz_members(path)]
        return [found for name, data in members if (found := _analyze_npy(name, data, python_version, trusted))]
    if kind == "npy":
        found = _analyze_npy(relative, path.read_bytes(), python_version, trusted)
        return [found] if found else []
    return [_analyze_stream(relative, path.read_bytes(), python_version, trusted)]


def _analyze_npy(relative: str, data: bytes, python_version: str, trusted: Sequence[str]) -> PickleFindings | None:
    try:
        embedded = _npy_pickle(data)
    except ValueError as exc:
        return _unread(relative, "pickle", error=str(exc))
    return None if embedded is None else _analyze_stream(relative, embedded, python_version, trusted)


def _analyze_stream(relative: str, raw: bytes, python_version: str, trusted: Sequence[str]) -> PickleFindings:
    try:
        data = decompressed(raw, MAX_DECOMPRESSED_BYTES)
    except NotRead as exc:
        return _unread(relative, "pickle", note=str(exc))
    except ValueError as exc:
        return _unread(relative, "pickle", error=str(exc))
    if not data:
        return _unread(relative, "pickle", error="not a pickle: the file is empty")
    decompiled = decompile(data, joblib=True, limits=INTERPRETER_LIMITS)
    findings = _findings(relative, decompiled, python_version, trusted)
    if decompiled.arrays:
        # pickle.load, unlike joblib.load, reads what follows an array wrapper as opcodes: a made-up wrapper must
        # not hide them. On a real joblib file this reading stops at the first array.
        as_pickle_load = decompile(data, joblib=False, limits=INTERPRETER_LIMITS)
        findings = _merged(findings, _findings(relative, as_pickle_load, python_version, trusted, whole=False))
    return findings


def analyze_model(model_dir: Path, python_version: str, trusted: Sequence[str] = ()) -> list[PickleFindings]:
    """Findings for every pickle and skops file in the model directory, sorted by path. `trusted`: modules
    whose classes the team vouches for (`pickles.trusted`)."""
    return [
        found for path in pickle_files(model_dir) for found in analyze_pickle(path, model_dir, python_version, trusted)
    ]
