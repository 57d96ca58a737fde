"""Code objects carried by value: the modules they import, the environment variables they read and the absolute
paths they hold, from their bytecode decoded without building a code object, never run.

Bytecode is decoded with the opcode table of the Python that wrote it: the running one's, or the one that Python's
interpreter on this machine gives. A name read from the environment is known when it is a constant, given in place
or held by a variable that only ever holds it; otherwise it is computed at run time, and no guess is made.
"""

from __future__ import annotations

import ast
import dis
import functools
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow_validator import commands
from mlflow_validator.stages.static.pickles.program import CO_CODE, CO_CONSTS, CO_NAMES, Program, constant, elements
from mlflow_validator.stages.venv.interpreter import search_path

CO_EXCEPTIONTABLE = 15  # Python 3.11 and later
ENV_SOURCES = frozenset({"environ", "getenv"})
ENV_METHODS = frozenset({"get", "setdefault", "pop", "__getitem__"})
IMPORT_FUNCTIONS = frozenset({"__import__", "import_module"})
NAME_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"})
NO_OPS = frozenset({"PUSH_NULL", "CACHE", "PRECALL", "NOP", "EXTENDED_ARG", "RESUME"})
# Loads of a variable, and where its name comes from: local slot, global or module name, closure cell.
VARIABLE_LOADS = {
    "LOAD_FAST": "local", "LOAD_FAST_CHECK": "local", "LOAD_FAST_BORROW": "local", "LOAD_FAST_LOAD_FAST": "local",
    "LOAD_NAME": "name", "LOAD_GLOBAL": "name", "LOAD_DEREF": "cell", "LOAD_CLASSDEREF": "cell",
}  # fmt: skip
VARIABLE_STORES = {
    "STORE_FAST": "local", "STORE_FAST_MAYBE_NULL": "local", "STORE_FAST_LOAD_FAST": "local",
    "STORE_FAST_STORE_FAST": "local", "DELETE_FAST": "local", "LOAD_FAST_AND_CLEAR": "local",
    "STORE_NAME": "name", "STORE_GLOBAL": "name", "DELETE_NAME": "name", "DELETE_GLOBAL": "name",
    "STORE_DEREF": "cell", "DELETE_DEREF": "cell",
}  # fmt: skip
PACKED_PAIRS = frozenset({"LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST"})
# What uses the name just given: a call, or the keyword names of a call (and a subscript, below).
CONSUMERS = frozenset({"CALL", "CALL_FUNCTION", "CALL_METHOD", "CALL_KW", "CALL_FUNCTION_KW", "KW_NAMES"})
SUBSCRIPT_OP = 26  # BINARY_OP's argument for a subscript (Python 3.14, where BINARY_SUBSCR went)
# The handlers that make an import optional, as in source (code_imports.OPTIONAL_IMPORT_GUARDS).
IMPORT_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception"})
MAX_TRY_BLOCKS = 4096  # entries of an exception table, and imports looked up in it, per code object
ENV_NAME = re.compile(r"[^=\x00]+")
SYSTEM_PREFIXES = ("/dev/", "/proc/", "/sys/")
# Where a notebook's files live: homes, mounts, data disks, the platforms' workspaces (Colab's /content,
# Databricks' /dbfs and /Volumes, Kaggle's /kaggle).
FILE_ROOTS = frozenset(
    {
        "home", "Users", "root", "tmp", "var", "opt", "mnt", "media", "srv", "data", "datasets", "models", "usr",
        "etc", "workspace", "workspaces", "content", "dbfs", "Volumes", "Workspace", "kaggle", "scratch", "shared",
        "efs", "nfs", "gpfs", "lustre", "storage", "app", "code", "notebooks", "project", "projects", "work",
    }
)  # fmt: skip
# A Python's opcode table, as its own `dis` gives it; the inline cache words after each opcode (3.11 and later) are
# listed by opcode (a list) or by name (3.13's dict). RUNNING below reads the running `dis` the same way.
TABLE_SCRIPT = (
    "import dis, json, sys; c = getattr(dis, '_inline_cache_entries', None) or {}; "
    "print(json.dumps([sys.version_info[:2], dis.opname, dis.hasconst, dis.hasname, "
    "[c.get(n, 0) if isinstance(c, dict) else c[i] for i, n in enumerate(dis.opname[:256])]]))"
)


@dataclass(frozen=True)
class Opcodes:
    """One Python version's bytecode: the name of each opcode, and which arguments index constants or names."""

    version: tuple[int, int]
    names: tuple[str, ...]
    hasconst: frozenset[int]
    hasname: frozenset[int]
    caches: tuple[int, ...]  # inline cache words after each opcode: data, never run

    def name_shift(self, opname: str) -> int:
        """How this Python packs a name's index into the argument of `opname` (as its `dis` unpacks it)."""
        if opname == "LOAD_GLOBAL":
            return 1 if self.version >= (3, 11) else 0
        if opname == "LOAD_ATTR":
            return 1 if self.version >= (3, 12) else 0
        return 2 if opname == "LOAD_SUPER_ATTR" else 0

    def name(self, opcode: int) -> str:
        return self.names[opcode] if opcode < len(self.names) else "<unknown>"


def _running_caches() -> tuple[int, ...]:
    found = getattr(dis, "_inline_cache_entries", None) or {}
    return tuple(found.get(n, 0) if isinstance(found, dict) else found[i] for i, n in enumerate(dis.opname[:256]))


RUNNING = Opcodes(
    sys.version_info[:2], tuple(dis.opname), frozenset(dis.hasconst), frozenset(dis.hasname), _running_caches()
)


@functools.cache
def opcodes_of(version: tuple[int, int]) -> Opcodes | None:
    """The opcode table of Python `version`: the running one's, or asked of that Python on this machine (its
    `dis` module; nothing of the model runs); None when the machine has no such Python."""
    if version == RUNNING.version:
        return RUNNING
    for directory in filter(None, search_path(os.environ).split(os.pathsep)):  # never "": the working directory
        python = Path(directory) / f"python{version[0]}.{version[1]}"
        if not os.access(python, os.X_OK):
            continue
        told = commands.run([python, "-I", "-c", TABLE_SCRIPT], timeout_s=30, check=False)
        try:
            found, names, hasconst, hasname, caches = json.loads(told.output.strip().splitlines()[-1])
        except (IndexError, ValueError):
            continue  # a shim for a version it cannot run, say
        if told.ok and tuple(found) == version:
            return Opcodes(version, tuple(names), frozenset(hasconst), frozenset(hasname), tuple(caches))
    return None


@dataclass(frozen=True)
class _Instruction:
    offset: int
    opname: str
    arg: int
    argval: object  # the constant or name the argument indexes; the argument itself for other opcodes


def _argval(opcodes: Opcodes, opcode: int, arg: int, consts: list[object], names: list[object]) -> object:
    if opcode in opcodes.hasconst:
        return consts[arg] if arg < len(consts) else None
    if opcode in opcodes.hasname:
        index = arg >> opcodes.name_shift(opcodes.name(opcode))
        return names[index] if index < len(names) else None
    return arg


def _instructions(
    code: bytes, consts: list[object], names: list[object], opcodes: Opcodes = RUNNING
) -> list[_Instruction]:
    """The instructions of bytecode, decoded without building a code object.

    CPython 3.11 rewrites a new code object's bytecode in place as it builds it, trusting it: hostile bytecode
    (fuzzing found it) corrupts memory there. Decoding the bytes here never reaches that C code.
    """
    found = []
    extended = 0
    offset = 0
    while offset < len(code) - 1:
        opcode, arg = code[offset], code[offset + 1] | extended
        name = opcodes.name(opcode)
        # The inline cache words that follow are data the interpreter skips, whatever they hold.
        following = offset + 2 + 2 * (opcodes.caches[opcode] if opcode < len(opcodes.caches) else 0)
        if name == "EXTENDED_ARG":
            extended = arg << 8
        elif name in NO_OPS or name.startswith("<"):  # "<12>": not an opcode of this Python
            extended = 0
        else:
            extended = 0
            found.append(_Instruction(offset, name, arg, _argval(opcodes, opcode, arg, consts, names)))
        offset = following
    return found


def _values(expr: ast.expr) -> list[object]:
    """co_consts or co_names as values; what is not a plain constant (a nested code object) as None."""
    return [e.value if isinstance(e, ast.Constant) else None for e in elements(expr)]


COMPUTED = object()  # a name given by what the code computes when it runs
Slot = tuple[str, object]  # a variable: ("local", slot index), ("name", name) or ("cell", cell index)
CONSTANT_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF"})
GLOBAL_STORES = frozenset({"STORE_GLOBAL", "STORE_NAME", "DELETE_GLOBAL", "DELETE_NAME"})


def _slots(instruction: _Instruction, kinds: dict[str, str], first_only: bool = False) -> list[Slot]:
    """The variables an instruction loads or stores."""
    kind = kinds[instruction.opname]
    if kind == "name":
        return [(kind, instruction.argval)]
    if instruction.opname in PACKED_PAIRS:
        pair: list[Slot] = [(kind, instruction.arg >> 4), (kind, instruction.arg & 15)]
        return pair[:1] if first_only else pair
    return [(kind, instruction.arg)]


def _constants(instructions: list[_Instruction], given: dict[str, str]) -> dict[Slot, str]:
    """Variables that hold one string for the whole code object: every store to them stores that constant (or, for
    a global the code never stores, the function's globals carried with it give it)."""
    stored: dict[Slot, set[object]] = {}
    for before, instruction in zip([None, *instructions], instructions, strict=False):
        if instruction.opname in VARIABLE_STORES:
            value = before.argval if before and before.opname == "LOAD_CONST" else None
            held = value if instruction.opname in CONSTANT_STORES and isinstance(value, str) else COMPUTED
            for slot in _slots(instruction, VARIABLE_STORES):
                stored.setdefault(slot, set()).add(held)
    constants: dict[Slot, str] = {("name", name): value for name, value in given.items()}
    for slot, values in stored.items():
        constants.pop(slot, None)
        if len(values) == 1 and isinstance(only := next(iter(values)), str):
            constants[slot] = only
    return constants


def _subscripts(instruction: _Instruction) -> bool:
    return instruction.opname == "BINARY_SUBSCR" or (
        instruction.opname == "BINARY_OP" and instruction.arg == SUBSCRIPT_OP
    )


def _uses(instruction: _Instruction) -> bool:
    """Whether the instruction takes what was just given: as a subscript, as a call's argument."""
    return instruction.opname in CONSUMERS or _subscripts(instruction)


def _name_given(following: list[_Instruction], through_methods: bool, constants: dict[Slot, str]) -> object:
    """The name a read of the environment (or an import by name) is given: a string, COMPUTED, or None when the
    instructions that follow read no one name (`dict(os.environ)`, `"X" in os.environ`)."""
    rest = list(following)
    if through_methods and rest and rest[0].opname in ("LOAD_ATTR", "LOAD_METHOD") and rest[0].argval in ENV_METHODS:
        rest = rest[1:]
    elif through_methods:  # os.environ[...]: a key, then the subscript, before anything else uses a value
        used = next((i for i in rest if _uses(i)), None)
        if not rest or rest[0].opname not in {"LOAD_CONST", *VARIABLE_LOADS} or used is None or not _subscripts(used):
            return None
    if not rest or _uses(rest[0]):
        return None
    given, after = rest[0], rest[1:3]
    if given.opname == "LOAD_CONST":
        name = given.argval if isinstance(given.argval, str) else None
    elif given.opname in VARIABLE_LOADS:
        name = constants.get(_slots(given, VARIABLE_LOADS, first_only=True)[0])
    else:
        return COMPUTED
    # The string is the whole argument only when what follows uses it, or is a plain next argument.
    plain_next = len(after) > 1 and after[0].opname in {"LOAD_CONST", *VARIABLE_LOADS} and _uses(after[1])
    if name is None or not after or not (_uses(after[0]) or plain_next) or not ENV_NAME.fullmatch(name):
        return COMPUTED
    return name


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """One of the 6-bit varints the exception table is written in (CPython's Objects/exception_handling_notes):
    at most five chunks, as CPython writes no larger one (a hostile run of them would make a huge integer)."""
    value = data[position] & 63
    for _ in range(4):
        if not data[position] & 64:
            break
        position += 1
        value = (value << 6) | (data[position] & 63)
    else:
        raise IndexError("a varint longer than five chunks")
    return value, position + 1


def _protected(table: bytes) -> list[tuple[int, int, int]]:
    """(start, end, handler) byte offsets of a 3.11+ exception table, in its order; an entry that cannot be parsed
    ends it, and a table of more than MAX_TRY_BLOCKS entries protects nothing."""
    entries: list[tuple[int, int, int]] = []
    position = 0
    try:
        while position < len(table) and len(entries) <= MAX_TRY_BLOCKS:
            start, position = _varint(table, position)
            length, position = _varint(table, position)
            target, position = _varint(table, position)
            _, position = _varint(table, position)
            entries.append((start * 2, (start + length) * 2, target * 2))
    except IndexError:
        return entries
    return entries if len(entries) <= MAX_TRY_BLOCKS else []


def _handler(entries: list[tuple[int, int, int]], offset: int) -> int | None:
    """The handler of an exception raised at `offset`, as CPython finds it: the first entry covering it, in the
    table's order, looking no further than the first entry that starts after it."""
    for start, end, handler in entries:
        if start > offset:
            return None
        if offset < end:
            return handler
    return None


def _catches_import_error(
    instructions: list[_Instruction], at: dict[int, int], handler: int, shadowed: set[str]
) -> bool:
    """Whether the handler is `except ImportError:` (or a tuple with it): PUSH_EXC_INFO, the names of the classes
    (a tuple of them), then CHECK_EXC_MATCH, as CPython compiles it; nothing else is taken for one, nor a name
    the pickle gives another value (a carried global, a store)."""
    index = at.get(handler)
    if index is None:
        return False
    head = instructions[index : index + 10]
    match = next((n for n, i in enumerate(head) if i.opname == "CHECK_EXC_MATCH"), None)
    if match is None or head[0].opname != "PUSH_EXC_INFO":
        return False
    between = head[1:match]
    loads = [i for i in between if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
    if any(i.opname not in ("LOAD_GLOBAL", "LOAD_NAME", "BUILD_TUPLE") for i in between):
        return False
    return bool((IMPORT_GUARDS - shadowed) & {str(i.argval) for i in loads})


def _optional_imports(
    args: list[ast.expr], instructions: list[_Instruction], opcodes: Opcodes, shadowed: set[str]
) -> set[int]:
    """The offsets of the imports that an `except ImportError` around them makes optional. Only from a 3.11+
    exception table, which says exactly which handler an instruction raises to; before 3.11 the handler depends
    on the path taken to the import, so none is taken for optional."""
    table = constant(args[CO_EXCEPTIONTABLE]) if len(args) > CO_EXCEPTIONTABLE else None
    if opcodes.version < (3, 11) or not isinstance(table, bytes):
        return set()
    entries = _protected(table)
    at = {instruction.offset: index for index, instruction in enumerate(instructions)}
    imports = [i.offset for i in instructions if i.opname == "IMPORT_NAME"][:MAX_TRY_BLOCKS]
    return {
        offset
        for offset in imports
        if (handler := _handler(entries, offset)) is not None
        and _catches_import_error(instructions, at, handler, shadowed)
    }


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


def _is_absolute_path(text: str) -> bool:
    """A path on the machine the model was logged on: under a directory such machines keep files in. A URL
    route (`/api/v1/predict`) or a format pattern (`/%Y/%m/%d`, `/items/{id}`) is none."""
    if not text.startswith("/") or text.startswith(("//", *SYSTEM_PREFIXES)) or len(text) > 4096:
        return False
    if text != text.strip() or "\n" in text or any(mark in text for mark in "%{}<>:?*"):
        return False
    parts = [part for part in text.split("/") if part]
    return len(parts) >= 2 and parts[0] in FILE_ROOTS


@dataclass(frozen=True)
class CodeFacts:
    imports: frozenset[str] = frozenset()  # what must import: an import `except ImportError` guards is optional
    env_vars: frozenset[str] = frozenset()
    computed_env_reads: int = 0  # reads of the environment whose name the code computes when it runs
    paths: frozenset[str] = frozenset()
    unread: str = ""  # why bytecode was not read: what it imports and reads is then not known


def _minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _is_relative_import(instructions: list[_Instruction], index: int) -> bool:
    """`from . import x` resolves against the function's package when it runs, which the pickle does not say.
    CPython pushes the level and the names right before IMPORT_NAME: only that sequence, with a level above 0,
    is taken for a relative import (anything else is read as absolute, and must resolve)."""
    if index < 2:
        return False
    level, names = instructions[index - 2], instructions[index - 1]
    pushed = level.argval if level.opname == names.opname == "LOAD_CONST" else None
    return isinstance(pushed, int) and not isinstance(pushed, bool) and pushed > 0


def _decoded(args: list[ast.expr], opcodes: Opcodes) -> list[_Instruction] | None:
    """One code object's instructions; None when it holds no bytecode."""
    code = constant(args[CO_CODE]) if len(args) > CO_NAMES else None
    if not isinstance(code, bytes):
        return None
    return _instructions(code, _values(args[CO_CONSTS]), _values(args[CO_NAMES]), opcodes)


def _one_code(
    args: list[ast.expr], instructions: list[_Instruction], opcodes: Opcodes, given: dict[str, str], shadowed: set[str]
) -> CodeFacts:
    """What one code object's own instructions import and read. `shadowed`: global names the pickle rebinds."""
    constants = _constants(instructions, given)
    optional = _optional_imports(args, instructions, opcodes, shadowed)
    imports: set[str] = set()
    env: set[str] = set()
    computed = 0
    for index, instruction in enumerate(instructions):
        following = instructions[index + 1 : index + 9]
        if instruction.opname == "IMPORT_NAME":
            if not _is_relative_import(instructions, index) and instruction.offset not in optional:
                imports.add(str(instruction.argval))
        elif instruction.opname not in NAME_LOADS:
            continue
        elif instruction.argval in ENV_SOURCES:
            # Not one name given in place: the environment reached some other way (aliased, copied, handed on).
            name = _name_given(following, instruction.argval == "environ", constants)
            if isinstance(name, str):
                env.add(name)
            else:
                computed += 1
        elif instruction.argval in IMPORT_FUNCTIONS:
            name = _name_given(following, False, constants)
            imports |= {name} if isinstance(name, str) else set()
    return CodeFacts(frozenset(imports), frozenset(env), computed)


def _constant_globals(program: Program, stored: set[str]) -> dict[str, str]:
    """The carried globals that hold one string for the whole pickle: every function that carries the name gives
    it that string, and no code of the pickle stores or deletes it (`stored`)."""
    found = {}
    for name, values in program.carried_globals.items():
        if len(values) == 1 and isinstance(only := next(iter(values)), str) and name not in stored:
            found[name] = only
    return found


def code_facts(program: Program, python_version: str) -> CodeFacts:
    if not program.codes:
        return CodeFacts()
    consts = [args[CO_CONSTS] for args in program.codes.values() if len(args) > CO_CONSTS]
    paths = frozenset(s for c in consts for s in _strings(c) if _is_absolute_path(s))
    model = _minor(python_version or "")
    opcodes = opcodes_of(model) if model else None
    if opcodes is None:
        version = f"Python {model[0]}.{model[1]}" if model else f"an unknown Python ({python_version!r})"
        return CodeFacts(paths=paths, unread=f"bytecode of {version} not read: this machine has no {version} to "
                         "decode it, so what it imports and reads from the environment is not known")  # fmt: skip
    decoded = {name: _decoded(args, opcodes) for name, args in program.codes.items()}
    readable = {name: instructions for name, instructions in decoded.items() if instructions is not None}
    stored = {str(i.argval) for code in readable.values() for i in code if i.opname in GLOBAL_STORES}
    given = _constant_globals(program, stored)
    shadowed = stored | set(program.carried_globals)
    facts = [_one_code(program.codes[name], code, opcodes, given, shadowed) for name, code in readable.items()]
    unread = len(decoded) - len(readable)
    return CodeFacts(
        frozenset().union(*(f.imports for f in facts)),
        frozenset().union(*(f.env_vars for f in facts)),
        sum(f.computed_env_reads for f in facts),
        paths,
        f"{unread} code object(s) hold no bytecode to read" if unread else "",
    )
