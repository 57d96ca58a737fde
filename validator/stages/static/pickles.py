"""Read every pickle in a model without loading it: what it calls, imports and reads when it is loaded.

fickling decompiles a pickle into Python (`from posix import system; _var0 = system('ls')`) without running it; the
decompiled module is read like source: its imports are the pickle's globals, its calls what the unpickler would call.
The bytecode of code objects that cloudpickle carries by value is decoded (never run, nor made a code object).
"""

from __future__ import annotations

import _compat_pickle
import ast
import bz2
import contextlib
import dis
import io
import lzma
import math
import pickletools
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fickling.exception import ResourceExhaustionError
from fickling.fickle import OPCODES_BY_NAME, Interpreter, InterpreterLimits, Opcode
from picklescan.scanner import _unsafe_globals

MAX_DECOMPILED_BYTES = 512 * 1024**2
MAX_DECOMPRESSED_BYTES = 2 * 1024**3
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".cloudpickle"})
SKOPS_SUFFIX = ".skops"
PICKLE_MARKER = b"\x80"  # PROTO, the first opcode of every pickle of protocol 2 or later
MAX_RENDERED = 120
# fickling's defaults: a million opcodes take fickling about ten seconds.
INTERPRETER_LIMITS = InterpreterLimits()

# What cloudpickle (any version since 1.0) emits to rebuild by-value classes and functions. Calling them builds
# objects; running the code they build is judged where it happens.
CLOUDPICKLE_MODULES = frozenset({"cloudpickle", "cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast"})
CLOUDPICKLE_RECONSTRUCTORS = frozenset(
    {
        "_builtin_type",
        "_make_function",
        "_function_setstate",
        "_make_skeleton_class",
        "_make_skeleton_enum",
        "_class_setstate",
        "_make_cell",
        "_make_empty_cell",
        "_cell_set",
        "_make_dict_keys",
        "_make_dict_values",
        "_make_dict_items",
        "_make_typevar",
        "_enum_getnewargs",
        "_class_getnewargs",
        "_get_dataclass_field_type_sentinel",
        "_dynamic_class_reduce",
        "_file_reconstructor",
        "_create_parametrized_type_hint",
        "_rebuild_tornado_coroutine",
        "_make_skel_func",
        "_fill_function",
        "_rehydrate_skeleton_class",
        "subimport",
        "dynamic_subimport",
        "instance",
    }
)
# Dangerous globals picklescan does not list: each imports, runs or reaches arbitrary code.
EXTRA_UNSAFE_GLOBALS: dict[str, Iterable[str] | str] = {
    "builtins": {"__import__", "setattr", "delattr", "globals", "vars"},
    "importlib": "*",
    "_imp": "*",
    "marshal": "*",
    "_posixsubprocess": "*",
    "multiprocessing": "*",
    "codeop": "*",
    "zipimport": "*",
}
GETATTR = frozenset({"builtins.getattr"})
# Wrappers that keep the function they are given (cloudpickle wraps class methods in them).
METHOD_WRAPPERS = frozenset({"builtins.staticmethod", "builtins.classmethod"})
# Globals that take a function to keep it, never to call it while unpickling.
FUNCTION_HOLDERS = METHOD_WRAPPERS | {"builtins.property", "collections.defaultdict", "copyreg._reconstructor"}
# cloudpickle pickles sys.stdout and sys.stderr as getattr(sys, ...): harmless.
HARMLESS_ATTRIBUTES = frozenset({"sys.stdout", "sys.stderr"})
# What the unpickler calls on a class or an instance, by the method fickling writes for it.
UNPICKLER_METHODS = {
    "__new__": "__new__",
    "__setstate__": "__setstate__",
    "append": "append",
    "extend": "extend",
    "update": "__setitem__",
    "__setitem__": "__setitem__",
}
CONSTRUCTORS = ("__init__", "__new__")

ENV_SOURCES = frozenset({"environ", "getenv"})
ENV_METHODS = frozenset({"get", "setdefault", "pop", "__getitem__"})
IMPORT_FUNCTIONS = frozenset({"__import__", "import_module"})
NAME_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"})
NO_OPS = frozenset({"PUSH_NULL", "CACHE", "PRECALL", "NOP", "EXTENDED_ARG", "RESUME"})
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
SYSTEM_PREFIXES = ("/dev/", "/proc/", "/sys/")
DECOMPILER_NAME = re.compile(r"_var\d+|result")

# Positional arguments of types.CodeType (Python 3.8 and later).
CO_CODE, CO_CONSTS, CO_NAMES, CO_NAME = 6, 7, 8, 11

# numpy dtypes whose item size is in the pickled state rather than the type string ('U5' is 20 bytes).
FLEXIBLE_DTYPES = ("U", "S", "V", "a")
WRAPPER_CLASS = "joblib.numpy_pickle.NumpyArrayWrapper"
WRAPPER_KEYS = frozenset({"subclass", "shape", "order", "dtype"})


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


# Decompression (joblib's compress=...) -----------------------------------------------------------------------


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class _NotRead(Exception):
    """A file the validator does not read (not a fault of the model)."""


def _decompressor(data: bytes) -> tuple[str, Callable[[], _Decompressor]] | None:
    if data[:1] == b"\x78" or data[:2] == b"\x1f\x8b":
        return "zlib", lambda: zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # 32: zlib or gzip header
    if data[:3] == b"BZh":
        return "bz2", bz2.BZ2Decompressor
    if data[:5] == b"\xfd7zXZ":
        return "xz", lzma.LZMADecompressor
    if data[:2] == b"\x5d\x00":
        return "lzma", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    return None


def _decompressed(data: bytes) -> bytes:
    """The pickle inside a compressed joblib file; `data` itself when it is not compressed."""
    limit = MAX_DECOMPRESSED_BYTES
    if data[:4] == b"\x04\x22\x4d\x18":
        raise _NotRead("not read: lz4-compressed (joblib compress='lz4'), which the validator does not decompress")
    found = _decompressor(data)
    if found is None:
        return data
    name, make = found
    try:
        out = make().decompress(data, limit + 1)
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"{name}-compressed but does not decompress: {exc}") from exc
    if len(out) > limit:
        raise _NotRead(f"not read: decompresses to more than {limit} bytes")
    return out


# Decompiling: fickling's interpreter, fed opcode by opcode so joblib's inline array data can be stepped over ----


def _opcode(info: pickletools.OpcodeInfo, arg: Any, pos: int | None) -> Any:
    """fickling's opcode; the few fickling lacks are replaced by ones that leave the same kind of value."""
    if info.name == "FLOAT":
        return OPCODES_BY_NAME["BINFLOAT"](argument=arg, position=pos)
    if info.name == "BYTEARRAY8":
        return OPCODES_BY_NAME["BINBYTES8"](argument=arg, position=pos)
    if info.name == "NEXT_BUFFER":
        return OPCODES_BY_NAME["NONE"](position=pos)
    if info.name == "READONLY_BUFFER":
        return None
    return Opcode(info=info, argument=arg, position=pos)


class _Feed:
    """One pickle stream read into fickling's interpreter lazily, so that it can step over joblib's array data.

    joblib writes each numpy array's raw bytes right after the NumpyArrayWrapper object in the stream, and its
    unpickler reads them when BUILD makes such a wrapper; pickletools would take them for opcodes.
    """

    def __init__(self, stream: io.BytesIO, *, joblib: bool, first_variable: int = 0) -> None:
        self.stream = stream
        self.joblib = joblib
        self.interpreter = Interpreter(self, first_variable_id=first_variable, limits=INTERPRETER_LIMITS)
        self.program = _Program()  # the statements so far, to recognise the wrapper BUILD just made
        self.nested: list[ast.stmt] = []  # object arrays are pickles of their own
        self.arrays = 0
        self.complete = False  # read to its STOP
        self.stopped = ""  # why not
        self.exhausted = ""  # fickling's resource limits stopped the interpretation

    def __iter__(self) -> Iterator[Any]:
        try:
            for info, arg, pos in pickletools.genops(self.stream):
                opcode = _opcode(info, arg, pos)
                # fickling stops asking for opcodes once it has run STOP
                self.complete = info.name == "STOP"
                if opcode is not None:
                    yield opcode
                if info.name == "BUILD" and self.joblib and not self._step_over_array():
                    return
        except ValueError as exc:  # genops: an unknown opcode or a truncated argument
            self.stopped = str(exc)

    def statements(self) -> list[ast.stmt]:
        return list(self.interpreter.module_body)

    def _step_over_array(self) -> bool:
        """After a BUILD: if it made joblib's array wrapper, move past the array data; False if that cannot be done."""
        body = self.interpreter.module_body
        for statement in body[self.program.count :]:
            self.program.read(statement)
        wrapper = _array_wrapper_state(self.program, body[-1])
        if wrapper is None:
            return True
        self.arrays += 1
        if _dtype_has_object(self.program, wrapper["dtype"]):
            return self._read_object_array()
        size = _array_bytes(self.program, wrapper)
        if size is None:
            self.stopped = "array data not read: joblib's array wrapper could not be sized"
            return False
        alignment = wrapper.get("numpy_array_alignment_bytes")
        if alignment is not None and not _is_none(alignment):
            padding = self.stream.read(1)  # joblib writes the padding's length, then the padding
            size += padding[0] if padding else 0
        self.stream.seek(self.stream.tell() + size)
        return True

    def _read_object_array(self) -> bool:
        nested = _Feed(self.stream, joblib=False, first_variable=1_000_000 * self.arrays)
        failure = nested.run()
        self.nested += nested.statements() + nested.nested
        if failure or not nested.complete:
            self.stopped = f"array data not read: an object array's pickle is unreadable ({failure or nested.stopped})"
            return False
        return True

    def run(self) -> str:
        """Interpret the stream; why interpretation failed, or ''."""
        # fickling reports malformed input on stdout and stderr; the findings say it instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                self.interpreter.run()
            except ResourceExhaustionError as exc:
                self.exhausted = str(exc)
                return f"fickling's limit reached ({exc})"
            except Exception as exc:  # hostile input can make fickling raise anything: the file is unreadable
                return f"{type(exc).__name__}: {exc}"
        return ""


@dataclass(frozen=True)
class _Decompiled:
    body: list[ast.stmt]
    arrays: int = 0
    note: str = ""
    error: str = ""


def _decompile(data: bytes, *, joblib: bool) -> _Decompiled:
    stream = io.BytesIO(data)
    feed = _Feed(stream, joblib=joblib)
    failure = feed.run()
    body = feed.statements() + feed.nested
    if feed.exhausted:
        return _Decompiled(body, feed.arrays, note=f"only the beginning was read: {failure}")
    if not body and (failure or not feed.complete):
        return _Decompiled([], error=f"not a pickle: {failure or feed.stopped}")
    if failure:
        return _Decompiled(body, feed.arrays, error=f"decompiling stopped ({failure}); only the part before was read")
    if feed.stopped.startswith("array data not read"):
        return _Decompiled(body, feed.arrays, note=f"{feed.stopped}; the rest of the stream was not read")
    if not feed.complete:
        return _Decompiled(body, feed.arrays, error=f"the pickle is truncated or corrupt: {feed.stopped}")
    trailing = len(data) - stream.tell()
    return _Decompiled(body, feed.arrays, note=f"{trailing} bytes after the pickle's end not read" if trailing else "")


# joblib's NumpyArrayWrapper: how many bytes of array data follow it -------------------------------------------


def _array_wrapper_state(program: _Program, statement: ast.stmt) -> dict[str, ast.expr] | None:
    """The state of the object the last BUILD built, if that object is joblib's NumpyArrayWrapper."""
    setstate = _setstate_call(statement)
    if setstate is None:
        return None
    target, state = setstate
    made = program.value_of(target)
    if made.kind != "instance" or program.value_of(made.name).name != WRAPPER_CLASS or not isinstance(state, ast.Dict):
        return None
    items = {
        k.value: v
        for k, v in zip(state.keys, state.values, strict=True)
        if isinstance(k, ast.Constant) and isinstance(k.value, str)
    }
    return items if items.keys() >= WRAPPER_KEYS else None


def _dtype_parts(program: _Program, expr: ast.expr) -> tuple[str, list[ast.expr]]:
    """(numpy's type string such as 'f8', 'U5' or 'O8'; the dtype's pickled state) of a dtype expression."""
    if not isinstance(expr, ast.Name):
        return "", []
    root = program.root(expr.id)
    made = program.origins.get(root)
    if not isinstance(made, ast.Call) or not made.args or not isinstance(made.args[0], ast.Constant):
        return "", []
    return str(made.args[0].value), _elements(program.setstates.get(root))


def _dtype_has_object(program: _Program, expr: ast.expr, depth: int = 0) -> bool:
    code, state = _dtype_parts(program, expr)
    if code.startswith("O"):
        return True
    fields = state[4] if len(state) > 4 else None  # {name: (dtype, offset), ...} for structured dtypes
    if depth > 32 or not isinstance(fields, ast.Dict):
        return False
    return any(_dtype_has_object(program, e[0], depth + 1) for e in map(_elements, fields.values) if e)


def _itemsize(program: _Program, expr: ast.expr) -> int | None:
    code, state = _dtype_parts(program, expr)
    if code.startswith(FLEXIBLE_DTYPES):
        elsize = _constant(state[5]) if len(state) > 5 else None
        return elsize if isinstance(elsize, int) and elsize >= 0 else None
    match = re.fullmatch(r"[a-zA-Z]+(\d+)", code)
    return int(match.group(1)) if match else None


def _array_bytes(program: _Program, wrapper: dict[str, ast.expr]) -> int | None:
    itemsize = _itemsize(program, wrapper["dtype"])
    dims = [d for d in map(_constant, _elements(wrapper["shape"])) if isinstance(d, int) and d >= 0]
    if itemsize is None or not isinstance(wrapper["shape"], ast.Tuple) or len(dims) != len(wrapper["shape"].elts):
        return None
    return math.prod(dims) * itemsize


def _is_none(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is None


# Reading the decompiled program ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    """What a name in the decompiled program holds."""

    kind: str  # global, types, code, function, class, enum, module, attribute, instance, other
    # global and attribute: "module.name"; types: a `types` attribute; code, function, class, enum: its name;
    # module: its dotted name; instance: the name bound to its class
    name: str = ""
    module: str = ""  # global and attribute: the module part of `name`
    carried: bool = False  # attribute: taken from something the pickle carries by value


OTHER = _Value("other")


@dataclass(frozen=True)
class _Site:
    """A call the unpickler makes, with what its callee was bound to at that point."""

    index: int  # of the statement
    call: ast.Call
    callee: _Value  # for a method call, what the object the method is called on holds
    method: str = ""  # "__setstate__" (BUILD), "__new__" (NEWOBJ), "append"... for a method call
    target: str = ""  # the name the callee (or the method's object) is bound to


@dataclass
class _Program:
    """Names, imports and calls of a decompiled pickle, read statement by statement."""

    bindings: dict[str, _Value] = field(default_factory=dict)
    origins: dict[str, ast.expr] = field(default_factory=dict)  # variable -> the expression assigned to it
    setstates: dict[str, ast.expr] = field(default_factory=dict)  # variable -> the state BUILD gave it
    imports: list[tuple[int, str, str]] = field(default_factory=list)  # (statement index, module, name)
    sites: list[_Site] = field(default_factory=list)
    attributes: list[tuple[int, _Value]] = field(default_factory=list)  # getattr(...) results
    codes: dict[str, list[ast.expr]] = field(default_factory=dict)  # variable -> types.CodeType arguments
    methods: dict[str, set[str]] = field(default_factory=dict)  # by-value class variable -> its carried methods
    bases: dict[str, list[str]] = field(default_factory=dict)  # by-value class variable -> its bases' names
    modules: list[str] = field(default_factory=list)  # subimport / dynamic_subimport
    count: int = 0  # statements read

    def read(self, statement: ast.stmt) -> None:
        if isinstance(statement, ast.ImportFrom):
            for alias in statement.names:
                module, name = _python3_name(statement.module or "", alias.name)
                self.imports.append((self.count, module, name))
                self.bindings[alias.asname or alias.name] = _Value("global", f"{module}.{name}", module)
        elif isinstance(statement, ast.Import):  # fickling's rendering of the EXT opcodes
            self.imports.append((self.count, "copyreg", "<extension registry>"))
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            self._assign(statement.targets[0], statement.value)
        elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
            if setstate := _setstate_call(statement):
                self.setstates[self.root(setstate[0])] = setstate[1]
            self._record(statement.value)
        self.count += 1

    def _assign(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):  # SETITEM on an object
            self._record(ast.Call(ast.Attribute(target.value, "__setitem__"), [target.slice, value], []))
            return
        if not isinstance(target, ast.Name):
            return
        self.origins[target.id] = value
        if isinstance(value, ast.Call):
            self._record(value)
        self.bindings[target.id] = self._evaluate(value, target.id)

    def _record(self, call: ast.Call) -> None:
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            self.sites.append(_Site(self.count, call, self.value_of(func.value.id), func.attr, func.value.id))
        elif isinstance(func, ast.Name):
            self.sites.append(_Site(self.count, call, self.value_of(func.id), target=func.id))
        else:
            self.sites.append(_Site(self.count, call, OTHER))

    def value_of(self, name: str) -> _Value:
        return self.bindings.get(name, OTHER)

    def root(self, name: str) -> str:
        """The variable behind BUILD's aliases (`_var2 = _var1`): the memo, and so later references, keep the root."""
        seen = {name}
        value = self.origins.get(name)
        while isinstance(value, ast.Name) and value.id not in seen:
            name = value.id
            seen.add(name)
            value = self.origins.get(name)
        return name

    def _evaluate(self, value: ast.expr, name: str) -> _Value:
        if isinstance(value, ast.Name):
            return self.value_of(value.id)
        if not isinstance(value, ast.Call):
            return OTHER
        func = value.func
        if isinstance(func, ast.Attribute) and func.attr == "__new__" and isinstance(func.value, ast.Name):
            return _Value("instance", func.value.id)
        if not isinstance(func, ast.Name):
            return OTHER
        callee = self.value_of(func.id)
        if callee.kind == "global":
            return self._global_result(callee, func.id, value.args, name)
        if callee.kind == "types":
            return self._types_result(callee.name, value.args, name)
        if callee.kind == "class":
            return _Value("instance", func.id)
        return OTHER

    def _global_result(self, callee: _Value, binding: str, args: list[ast.expr], name: str) -> _Value:
        """What calling a global makes; by default an instance of it (the global may be a class)."""
        short = callee.name.rpartition(".")[2]
        if callee.module in CLOUDPICKLE_MODULES:
            return self._cloudpickle_result(short, args, name)
        if callee.module == "types":
            return self._types_result(short, args, name)
        if callee.name in GETATTR and len(args) == 2:
            attribute = self._attribute(args[0], args[1])
            self.attributes.append((self.count, attribute))
            return attribute
        if callee.name in METHOD_WRAPPERS and args and isinstance(args[0], ast.Name):
            return self.value_of(args[0].id)
        if callee.name == "copyreg._reconstructor" and args and isinstance(args[0], ast.Name):
            return _Value("instance", args[0].id)  # protocols 0 and 1 make instances this way
        return _Value("instance", binding)

    def _cloudpickle_result(self, short: str, args: list[ast.expr], name: str) -> _Value:
        first = _constant(args[0]) if args else None
        if short == "_builtin_type" and isinstance(first, str):
            return _Value("types", first)
        if short in ("subimport", "dynamic_subimport") and isinstance(first, str):
            self.modules.append(first)
            return _Value("module", first)
        if short in ("_make_function", "_make_skel_func") and args:
            return _Value("function", self._code_name(args[0]))
        if short == "_make_skeleton_class" and len(args) > 2:
            self.bases[name] = [b.id for b in _elements(args[2]) if isinstance(b, ast.Name)]
            return _Value("class", str(_constant(args[1])))
        if short == "_make_skeleton_enum" and len(args) > 1:
            return _Value("enum", str(_constant(args[1])))
        if short in ("_class_setstate", "_rehydrate_skeleton_class") and len(args) > 1:
            self._carried_methods(args[0], args[1])
        return OTHER

    def _types_result(self, type_name: str, args: list[ast.expr], name: str) -> _Value:
        if type_name == "CodeType":
            self.codes[name] = list(args)
            return _Value("code", str(_constant(args[CO_NAME])) if len(args) > CO_NAME else "?")
        if type_name == "FunctionType" and args:
            return _Value("function", self._code_name(args[0]))
        if type_name == "MethodType" and args and isinstance(args[0], ast.Name):
            held = self.value_of(args[0].id)
            return held if held.kind == "function" else OTHER
        return OTHER

    def _attribute(self, base: ast.expr, attribute: ast.expr) -> _Value:
        attr = _constant(attribute)
        if not isinstance(attr, str) or not isinstance(base, ast.Name):
            return OTHER
        held = self.value_of(base.id)
        if held.kind == "global":
            return _Value("attribute", f"{held.name}.{attr}", held.module)
        if held.kind == "module":
            return _Value("attribute", f"{held.name}.{attr}", held.name)
        owner = self.value_of(held.name) if held.kind == "instance" else held
        carried = owner.kind in ("function", "class", "enum")
        return _Value("attribute", f"{owner.name}.{attr}" if carried else attr, carried=carried)

    def _code_name(self, code: ast.expr) -> str:
        if isinstance(code, ast.Name) and (held := self.value_of(code.id)).kind == "code":
            return held.name
        return "?"

    def _carried_methods(self, cls: ast.expr, state: ast.expr) -> None:
        elements = _elements(state)
        class_dict = elements[0] if elements else state
        if not isinstance(cls, ast.Name) or not isinstance(class_dict, ast.Dict):
            return
        for key, value in zip(class_dict.keys, class_dict.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and isinstance(value, ast.Name)
                and self.value_of(value.id).kind == "function"
            ):
                self.methods.setdefault(cls.id, set()).add(str(key.value))

    def class_methods(self, cls: str) -> set[str]:
        """The methods a by-value class carries, its by-value bases' included."""
        found: set[str] = set()
        pending, seen = [cls], set()
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                found |= self.methods.get(current, set())
                pending += self.bases.get(current, [])
        return found


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """The global the unpickler imports: it maps Python 2 names (`copy_reg`, `__builtin__`) as pickle.load does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _constant(expr: ast.expr | None) -> object:
    return expr.value if isinstance(expr, ast.Constant) else None


def _elements(expr: ast.expr | None) -> list[ast.expr]:
    return list(expr.elts) if isinstance(expr, ast.Tuple | ast.List) else []


def _setstate_call(statement: ast.stmt) -> tuple[str, ast.expr] | None:
    """(variable, state) for BUILD's `_varN.__setstate__(state)`."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return None
    func = statement.value.func
    args = statement.value.args
    if isinstance(func, ast.Attribute) and func.attr == "__setstate__" and isinstance(func.value, ast.Name) and args:
        return func.value.id, args[0]
    return None


def _read_program(body: list[ast.stmt]) -> _Program:
    program = _Program()
    for statement in body:
        program.read(statement)
    return program


# Unsafe imports and calls ------------------------------------------------------------------------------------


def _rules() -> dict[str, frozenset[str] | str]:
    merged: dict[str, frozenset[str] | str] = {}
    for table in (_unsafe_globals, EXTRA_UNSAFE_GLOBALS):
        for module, names in table.items():
            # picklescan mixes "*", a bare name ("functools": "partial") and sets of names.
            if names == "*" or merged.get(module) == "*":
                merged[module] = "*"
            else:
                current = merged.get(module, frozenset())
                merged[module] = frozenset(current) | frozenset([names] if isinstance(names, str) else names)
    return merged


UNSAFE_RULES = _rules()


def is_unsafe_global(module: str, name: str) -> bool:
    """Whether a pickle importing `module.name` can run arbitrary code, by picklescan's list and a few more."""
    if module in CLOUDPICKLE_MODULES and name in CLOUDPICKLE_RECONSTRUCTORS:
        return False
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        rule = UNSAFE_RULES.get(".".join(parts[:depth]))
        if rule == "*":
            return True
        if rule is not None:
            return depth == len(parts) and (name in rule or name.split(".")[0] in rule)
    return False


def _dangerous(value: _Value) -> bool:
    """A global, or an attribute getattr fetched from a module or a global, that is on the unsafe list."""
    return bool(value.module) and is_unsafe_global(value.module, value.name[len(value.module) + 1 :])


def _render(call: ast.Call, callee: str) -> str:
    try:
        text = ast.unparse(ast.Call(ast.Name(callee, ast.Load()), call.args, call.keywords))
    except (RecursionError, ValueError, TypeError, AttributeError):
        text = f"{callee}(...)"
    return text if len(text) <= MAX_RENDERED else text[: MAX_RENDERED - 3] + "..."


def _carried_function(program: _Program, args: list[ast.expr]) -> str:
    for arg in args:
        if isinstance(arg, ast.Name) and (held := program.value_of(arg.id)).kind == "function":
            return held.name
    return ""


def _judge_global(program: _Program, site: _Site) -> str:
    callee, args = site.callee, site.call.args
    if callee.name in GETATTR and len(args) == 2 and isinstance(_constant(args[1]), str):
        return ""  # the attribute it fetches is judged where it is used
    if _dangerous(callee):
        return _render(site.call, callee.name)
    keeps = callee.module in CLOUDPICKLE_MODULES or callee.module == "types" or callee.name in FUNCTION_HOLDERS
    if not keeps and (function := _carried_function(program, args)):
        return f"passes code carried in the pickle to {callee.name} at load time (function `{function}`)"
    return ""


def _judge_attribute(site: _Site) -> str:
    callee = site.callee
    if callee.carried:
        return f"calls code carried in the pickle at load time (`{callee.name}`)"
    if not callee.module:
        return f"calls {_render(site.call, 'getattr(...).' + callee.name)} at load time"
    return _render(site.call, callee.name) if _dangerous(callee) else ""


def _judge_method(program: _Program, site: _Site) -> str:
    """BUILD, NEWOBJ, APPENDS, SETITEMS: methods the unpickler calls on what it made."""
    callee = site.callee
    if site.method == "__setstate__" and callee.kind == "global":
        return f"sets attributes of {callee.name} at load time (BUILD on a global)"
    cls = callee.name if callee.kind == "instance" else site.target if callee.kind == "class" else ""
    method = UNPICKLER_METHODS.get(site.method, "")
    if cls and program.value_of(cls).kind == "class" and method in program.class_methods(cls):
        return f"calls code carried in the pickle at load time (class `{program.value_of(cls).name}`, its {method})"
    return ""


def _judge(program: _Program, site: _Site) -> str:
    """Why the call is unsafe, or ''."""
    callee = site.callee
    if site.method:
        return _judge_method(program, site)
    if callee.kind == "global":
        return _judge_global(program, site)
    if callee.kind == "function":
        return f"calls code carried in the pickle at load time (function `{callee.name}`)"
    if callee.kind == "class":
        carried = [m for m in CONSTRUCTORS if m in program.class_methods(site.target)]
        if not carried:
            return ""
        return f"calls code carried in the pickle at load time (class `{callee.name}`, its {carried[0]})"
    if callee.kind == "attribute":
        return _judge_attribute(site)
    if callee.kind in ("types", "enum", "code", "module"):
        return ""
    return f"calls {_render(site.call, '<computed>')} at load time: a callable the pickle computed"


def _unsafe(program: _Program) -> tuple[str, ...]:
    found: list[tuple[int, str]] = []
    for site in program.sites:
        if reason := _judge(program, site):
            found.append((site.index, reason))
    called = {s.callee.name for s in program.sites if not s.method and s.callee.kind in ("global", "attribute")}
    for index, value in program.attributes:
        if value.name not in called and value.name not in HARMLESS_ATTRIBUTES and _dangerous(value):
            found.append((index, f"{value.name} (through getattr)"))
    for index, module, name in program.imports:
        dotted = f"{module}.{name}"
        if dotted not in called and (is_unsafe_global(module, name) or name.startswith("<")):
            found.append((index, dotted))
        if DECOMPILER_NAME.fullmatch(name):
            found.append((index, f"{dotted} (a global named like a decompiler variable, which can hide a call)"))
    return tuple(dict.fromkeys(reason for _, reason in sorted(found, key=lambda item: item[0])))


# Code objects carried by value: imports, environment variables, absolute paths ------------------------------


@dataclass(frozen=True)
class _Instruction:
    opname: str
    argval: object  # the constant or name the argument indexes; the argument itself for other opcodes


# How the running interpreter packs a name's index into these opcodes' arguments (as `dis` unpacks them).
NAME_SHIFTS = {
    "LOAD_GLOBAL": 1 if sys.version_info >= (3, 11) else 0,
    "LOAD_ATTR": 1 if sys.version_info >= (3, 12) else 0,
    "LOAD_SUPER_ATTR": 2,
}


def _argval(opcode: int, arg: int, consts: list[object], names: list[object]) -> object:
    if opcode in dis.hasconst:
        return consts[arg] if arg < len(consts) else None
    if opcode in dis.hasname:
        index = arg >> NAME_SHIFTS.get(dis.opname[opcode], 0)
        return names[index] if index < len(names) else None
    return arg


def _instructions(code: bytes, consts: list[object], names: list[object]) -> list[_Instruction]:
    """The instructions of bytecode for the running Python, decoded without building a code object.

    CPython 3.11 rewrites a new code object's bytecode in place as it builds it, trusting it: hostile bytecode
    (fuzzing found it) corrupts memory there. Decoding the bytes here never reaches that C code.
    """
    found = []
    extended = 0
    for offset in range(0, len(code) - 1, 2):
        opcode, arg = code[offset], code[offset + 1] | extended
        if opcode == dis.EXTENDED_ARG:
            extended = arg << 8
            continue
        extended = 0
        name = dis.opname[opcode]
        if name in NO_OPS or name.startswith("<"):  # "<12>": not an opcode of this Python
            continue
        found.append(_Instruction(name, _argval(opcode, arg, consts, names)))
    return found


def _values(expr: ast.expr) -> list[object]:
    """co_consts or co_names as values; what is not a plain constant (a nested code object) as None."""
    return [e.value if isinstance(e, ast.Constant) else None for e in _elements(expr)]


def _string_after(following: list[_Instruction], through_methods: bool) -> str | None:
    for instruction in following[:3]:
        if through_methods and instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and instruction.argval in ENV_METHODS:
            continue
        if instruction.opname == "LOAD_CONST" and isinstance(instruction.argval, str):
            return instruction.argval
        return None
    return None


def _import_level(instructions: list[_Instruction], index: int) -> int:
    level = instructions[index - 2].argval if index >= 2 else 0
    return level if isinstance(level, int) else 0


def _bytecode_facts(args: list[ast.expr]) -> tuple[set[str], set[str]] | None:
    """(modules imported, environment variables read) by one code object's own instructions; None if unreadable."""
    code = _constant(args[CO_CODE]) if len(args) > CO_NAMES else None
    if not isinstance(code, bytes):
        return None
    instructions = _instructions(code, _values(args[CO_CONSTS]), _values(args[CO_NAMES]))
    imports: set[str] = set()
    env: set[str] = set()
    for index, instruction in enumerate(instructions):
        # A relative import resolves against the function's package when it runs; the pickle does not say which.
        if instruction.opname == "IMPORT_NAME" and _import_level(instructions, index) == 0:
            imports.add(str(instruction.argval))
        elif instruction.opname in NAME_LOADS and instruction.argval in ENV_SOURCES | IMPORT_FUNCTIONS:
            name = _string_after(instructions[index + 1 :], instruction.argval == "environ")
            if name is not None:
                (imports if instruction.argval in IMPORT_FUNCTIONS else env).add(name)
    return imports, env


def _strings(expr: ast.expr) -> Iterator[str]:
    # Not ast.walk: fickling builds tuples with their elements in a tuple, which ast.walk skips.
    pending: list[ast.AST] = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        for _, value in ast.iter_fields(node):
            children = value if isinstance(value, list | tuple) else [value]
            pending += [child for child in children if isinstance(child, ast.AST)]


def _guessed_env(args: list[ast.expr]) -> set[str]:
    """Without the bytecode: upper-case string constants of code that names `environ` or `getenv`."""
    if len(args) <= CO_NAMES or not ENV_SOURCES & set(_strings(args[CO_NAMES])):
        return set()
    return {s for s in _strings(args[CO_CONSTS]) if ENV_NAME.fullmatch(s)}


def _is_absolute_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith(("//", *SYSTEM_PREFIXES)) or len(text) > 4096:
        return False
    if text != text.strip() or "\n" in text:
        return False
    return len([part for part in text.split("/") if part]) >= 2


@dataclass(frozen=True)
class _CodeFacts:
    imports: frozenset[str] = frozenset()
    env_vars: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    note: str = ""


def _minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _read_bytecode(program: _Program) -> tuple[set[str], set[str], int]:
    """(imports, environment variables, how many code objects could not be read)."""
    imports: set[str] = set()
    env: set[str] = set()
    unread = 0
    for args in program.codes.values():
        facts = _bytecode_facts(args)
        if facts is None:
            unread += 1
            env |= _guessed_env(args)
        else:
            imports |= facts[0]
            env |= facts[1]
    return imports, env, unread


def _code_facts(program: _Program, python_version: str) -> _CodeFacts:
    if not program.codes:
        return _CodeFacts()
    consts = [args[CO_CONSTS] for args in program.codes.values() if len(args) > CO_CONSTS]
    paths = frozenset(s for c in consts for s in _strings(c) if _is_absolute_path(s))
    model, running = _minor(python_version or ""), sys.version_info[:2]
    if model != running:
        env = frozenset(e for args in program.codes.values() for e in _guessed_env(args))
        version = f"Python {model[0]}.{model[1]}" if model else f"an unknown Python ({python_version!r})"
        note = f"bytecode of {version} not read on {running[0]}.{running[1]}; environment variables guessed"
        return _CodeFacts(env_vars=env, paths=paths, note=note)
    imports, found_env, unread = _read_bytecode(program)
    note = f"bytecode of {unread} code object(s) not readable; their environment variables guessed" if unread else ""
    return _CodeFacts(frozenset(imports), frozenset(found_env), paths, note)


# Public entry points -----------------------------------------------------------------------------------------


def _findings(relative: str, decompiled: _Decompiled, python_version: str) -> PickleFindings:
    program = _read_program(decompiled.body)
    facts = _code_facts(program, python_version)
    globals_ = tuple(dict.fromkeys(f"{m}.{n}" for _, m, n in program.imports if not n.startswith("<")))
    return PickleFindings(
        file=relative,
        kind="pickle",
        globals=globals_,
        unsafe=_unsafe(program),
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
        data = _decompressed(path.read_bytes())
    except _NotRead as exc:
        return _unread(relative, "pickle", note=str(exc))
    except (OSError, ValueError) as exc:
        return _unread(relative, "pickle", error=str(exc))
    if not data:
        return _unread(relative, "pickle", error="not a pickle: the file is empty")
    decompiled = _decompile(data, joblib=True)
    findings = _findings(relative, decompiled, python_version)
    if decompiled.arrays:
        # pickle.load, unlike joblib.load, reads what follows an array wrapper as opcodes: a made-up wrapper must
        # not hide them. On a real joblib file this reading stops at the first array.
        findings = _merged(findings, _findings(relative, _decompile(data, joblib=False), python_version))
    return findings


def analyze_model(model_dir: Path, python_version: str) -> list[PickleFindings]:
    """Findings for every pickle and skops file in the model directory, sorted by path."""
    return [analyze_pickle(path, model_dir, python_version) for path in pickle_files(model_dir)]
