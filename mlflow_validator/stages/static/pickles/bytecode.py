"""Code objects carried by value: the modules they import, the environment variables they read and the absolute
paths they hold, from their bytecode decoded without building a code object, never run."""

from __future__ import annotations

import ast
import dis
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from mlflow_validator.stages.static.pickles.program import CO_CODE, CO_CONSTS, CO_NAMES, Program, constant, elements

ENV_SOURCES = frozenset({"environ", "getenv"})
ENV_METHODS = frozenset({"get", "setdefault", "pop", "__getitem__"})
IMPORT_FUNCTIONS = frozenset({"__import__", "import_module"})
NAME_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"})
NO_OPS = frozenset({"PUSH_NULL", "CACHE", "PRECALL", "NOP", "EXTENDED_ARG", "RESUME"})
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
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
    return [e.value if isinstance(e, ast.Constant) else None for e in elements(expr)]


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
    code = constant(args[CO_CODE]) if len(args) > CO_NAMES else None
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
    imports: frozenset[str] = frozenset()
    env_vars: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    note: str = ""


def _minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _read_bytecode(program: Program) -> tuple[set[str], set[str], int]:
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


def code_facts(program: Program, python_version: str) -> CodeFacts:
    if not program.codes:
        return CodeFacts()
    consts = [args[CO_CONSTS] for args in program.codes.values() if len(args) > CO_CONSTS]
    paths = frozenset(s for c in consts for s in _strings(c) if _is_absolute_path(s))
    model, running = _minor(python_version or ""), sys.version_info[:2]
    if model != running:
        env = frozenset(e for args in program.codes.values() for e in _guessed_env(args))
        version = f"Python {model[0]}.{model[1]}" if model else f"an unknown Python ({python_version!r})"
        note = f"bytecode of {version} not read on {running[0]}.{running[1]}; environment variables guessed"
        return CodeFacts(env_vars=env, paths=paths, note=note)
    imports, found_env, unread = _read_bytecode(program)
    note = f"bytecode of {unread} code object(s) not readable; their environment variables guessed" if unread else ""
    return CodeFacts(frozenset(imports), frozenset(found_env), paths, note)
