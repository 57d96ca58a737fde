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
EXCEPTION_MATCHES = frozenset({"CHECK_EXC_MATCH", "JUMP_IF_NOT_EXC_MATCH"})
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
TABLE_SCRIPT = "import dis, json, sys; print(json.dumps([sys.version_info[:2], dis.opname, dis.hasconst, dis.hasname]))"


@dataclass(frozen=True)
class Opcodes:
    """One Python version's bytecode: the name of each opcode, and which arguments index constants or names."""

    version: tuple[int, int]
    names: tuple[str, ...]
    hasconst: frozenset[int]
    hasname: frozenset[int]

    def name_shift(self, opname: str) -> int:
        """How this Python packs a name's index into the argument of `opname` (as its `dis` unpacks it)."""
        if opname == "LOAD_GLOBAL":
            return 1 if self.version >= (3, 11) else 0
        if opname == "LOAD_ATTR":
            return 1 if self.version >= (3, 12) else 0
        return 2 if opname == "LOAD_SUPER_ATTR" else 0

    def name(self, opcode: int) -> str:
        return self.names[opcode] if opcode < len(self.names) else "<unknown>"


RUNNING = Opcodes(sys.version_info[:2], tuple(dis.opname), frozenset(dis.hasconst), frozenset(dis.hasname))


@functools.cache
def opcodes_of(version: tuple[int, int]) -> Opcodes | None:
    """The opcode table of Python `version`: the running one's, or asked of that Python on this machine (its
    `dis` module; nothing of the model runs); None when the machine has no such Python."""
    if version == RUNNING.version:
        return RUNNING
    for directory in search_path(os.environ).split(os.pathsep):
        python = Path(directory or ".") / f"python{version[0]}.{version[1]}"
        if not os.access(python, os.X_OK):
            continue
        told = commands.run([python, "-I", "-c", TABLE_SCRIPT], timeout_s=30, check=False)
        if not told.ok:
            continue  # a shim for a version it cannot run, say
        found, names, hasconst, hasname = json.loads(told.output.strip().splitlines()[-1])
        if tuple(found) == version:
            return Opcodes(version, tuple(names), frozenset(hasconst), frozenset(hasname))
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
    for offset in range(0, len(code) - 1, 2):
        opcode, arg = code[offset], code[offset + 1] | extended
        name = opcodes.name(opcode)
        if name == "EXTENDED_ARG":
            extended = arg << 8
            continue
        extended = 0
        if name in NO_OPS or name.startswith("<"):  # "<12>": not an opcode of this Python
            continue
        found.append(_Instruction(offset, name, arg, _argval(opcodes, opcode, arg, consts, names)))
    return found


def _values(expr: ast.expr) -> list[object]:
    """co_consts or co_names as values; what is not a plain constant (a nested code object) as None."""
    return [e.value if isinstance(e, ast.Constant) else None for e in elements(expr)]


COMPUTED = object()  # a name given by what the code computes when it runs
Slot = tuple[str, object]  # a variable: ("local", slot index), ("name", name) or ("cell", cell index)
CONSTANT_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF"})


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
    """(start, end, handler) byte offsets of a 3.11+ exception table; what cannot be parsed protects nothing."""
    entries = []
    position = 0
    try:
        while position < len(table):
            start, position = _varint(table, position)
            length, position = _varint(table, position)
            target, position = _varint(table, position)
            _, position = _varint(table, position)
            entries.append((start * 2, (start + length) * 2, target * 2))
    except IndexError:
        return entries
    return entries


def _setup_blocks(instructions: list[_Instruction], version: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Before 3.11: a try block runs from its SETUP_FINALLY to its handler, which the argument jumps to."""
    unit = 2 if version >= (3, 10) else 1
    return [
        (i.offset, i.offset + 2 + i.arg * unit, i.offset + 2 + i.arg * unit)
        for i in instructions
        if i.opname == "SETUP_FINALLY"
    ]


def _guarded_offsets(instructions: list[_Instruction], blocks: list[tuple[int, int, int]]) -> set[int]:
    """The offsets of the instructions whose ImportError a handler catches (as `except ImportError:` in source)."""
    at = {instruction.offset: index for index, instruction in enumerate(instructions)}
    edges = []
    for start, end, handler in blocks:
        index = at.get(handler)
        if index is None or end <= start:
            continue
        head = instructions[index : index + 8]
        match = next((n for n, i in enumerate(head) if i.opname in EXCEPTION_MATCHES), None)
        if match is not None and IMPORT_GUARDS & {str(i.argval) for i in head[:match] if i.opname in VARIABLE_LOADS}:
            edges += [(start, 1), (end, -1)]
    # One sweep over the instructions in offset order: a hostile table may hold as many blocks as instructions.
    edges.sort()
    inside: set[int] = set()
    depth = passed = 0
    for instruction in instructions:
        while passed < len(edges) and edges[passed][0] <= instruction.offset:
            depth += edges[passed][1]
            passed += 1
        if depth > 0:
            inside.add(instruction.offset)
    return inside


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


def _import_level(instructions: list[_Instruction], index: int) -> int:
    level = instructions[index - 2].argval if index >= 2 else 0
    return level if isinstance(level, int) else 0


def _try_blocks(args: list[ast.expr], instructions: list[_Instruction], opcodes: Opcodes) -> list[tuple[int, int, int]]:
    if opcodes.version < (3, 11):
        return _setup_blocks(instructions, opcodes.version)
    table = constant(args[CO_EXCEPTIONTABLE]) if len(args) > CO_EXCEPTIONTABLE else None
    return _protected(table) if isinstance(table, bytes) else []


def _one_code(args: list[ast.expr], opcodes: Opcodes, given: dict[str, str]) -> CodeFacts | None:
    """What one code object's own instructions import and read; None when it holds no bytecode."""
    code = constant(args[CO_CODE]) if len(args) > CO_NAMES else None
    if not isinstance(code, bytes):
        return None
    instructions = _instructions(code, _values(args[CO_CONSTS]), _values(args[CO_NAMES]), opcodes)
    constants = _constants(instructions, given)
    guarded = _guarded_offsets(instructions, _try_blocks(args, instructions, opcodes))
    imports: set[str] = set()
    env: set[str] = set()
    computed = 0
    for index, instruction in enumerate(instructions):
        optional = instruction.offset in guarded
        following = instructions[index + 1 : index + 9]
        # A relative import resolves against the function's package when it runs; the pickle does not say which.
        if instruction.opname == "IMPORT_NAME" and _import_level(instructions, index) == 0 and not optional:
            imports.add(str(instruction.argval))
        elif instruction.opname not in NAME_LOADS:
            continue
        elif instruction.argval in ENV_SOURCES:
            name = _name_given(following, instruction.argval == "environ", constants)
            computed += name is COMPUTED
            env |= {name} if isinstance(name, str) else set()
        elif instruction.argval in IMPORT_FUNCTIONS and not optional:
            name = _name_given(following, False, constants)
            imports |= {name} if isinstance(name, str) else set()
    return CodeFacts(frozenset(imports), frozenset(env), computed)


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
    read = {name: _one_code(args, opcodes, program.code_globals.get(name, {})) for name, args in program.codes.items()}
    facts = [f for f in read.values() if f is not None]
    unread = len(read) - len(facts)
    return CodeFacts(
        frozenset().union(*(f.imports for f in facts)),
        frozenset().union(*(f.env_vars for f in facts)),
        sum(f.computed_env_reads for f in facts),
        paths,
        f"{unread} code object(s) hold no bytecode to read" if unread else "",
    )
