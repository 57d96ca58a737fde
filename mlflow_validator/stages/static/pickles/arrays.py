"""joblib's NumpyArrayWrapper: how many bytes of array data follow it in the stream."""

from __future__ import annotations

import ast
import math
import re

from mlflow_validator.stages.static.pickles.program import Program, constant, elements, setstate_call

# numpy dtypes whose item size is in the pickled state rather than the type string ('U5' is 20 bytes).
FLEXIBLE_DTYPES = ("U", "S", "V", "a")
WRAPPER_CLASS = "joblib.numpy_pickle.NumpyArrayWrapper"
WRAPPER_KEYS = frozenset({"subclass", "shape", "order", "dtype"})


def array_wrapper_state(program: Program, statement: ast.stmt) -> dict[str, ast.expr] | None:
    """The state of the object the last BUILD built, if that object is joblib's NumpyArrayWrapper."""
    setstate = setstate_call(statement)
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


def _dtype_parts(program: Program, expr: ast.expr) -> tuple[str, list[ast.expr]]:
    """(numpy's type string such as 'f8', 'U5' or 'O8'; the dtype's pickled state) of a dtype expression."""
    if not isinstance(expr, ast.Name):
        return "", []
    root = program.root(expr.id)
    made = program.origins.get(root)
    if not isinstance(made, ast.Call) or not made.args or not isinstance(made.args[0], ast.Constant):
        return "", []
    return str(made.args[0].value), elements(program.setstates.get(root))


def dtype_has_object(program: Program, expr: ast.expr, depth: int = 0) -> bool:
    code, state = _dtype_parts(program, expr)
    if code.startswith("O"):
        return True
    if depth > 32:
        return True  # nested beyond reason: taken for what it may hide
    subarray = elements(state[2]) if len(state) > 2 else []  # (base dtype, shape) of `(object, (2,))`
    if subarray and dtype_has_object(program, subarray[0], depth + 1):
        return True
    fields = state[4] if len(state) > 4 else None  # {name: (dtype, offset), ...} for structured dtypes
    if not isinstance(fields, ast.Dict):
        return False
    return any(dtype_has_object(program, e[0], depth + 1) for e in map(elements, fields.values) if e)


def _itemsize(program: Program, expr: ast.expr) -> int | None:
    code, state = _dtype_parts(program, expr)
    if code.startswith(FLEXIBLE_DTYPES):
        elsize = constant(state[5]) if len(state) > 5 else None
        return elsize if isinstance(elsize, int) and elsize >= 0 else None
    match = re.fullmatch(r"[a-zA-Z]+(\d+)", code)
    return int(match.group(1)) if match else None


def array_bytes(program: Program, wrapper: dict[str, ast.expr]) -> int | None:
    itemsize = _itemsize(program, wrapper["dtype"])
    dims = [d for d in map(constant, elements(wrapper["shape"])) if isinstance(d, int) and d >= 0]
    if itemsize is None or not isinstance(wrapper["shape"], ast.Tuple) or len(dims) != len(wrapper["shape"].elts):
        return None
    return math.prod(dims) * itemsize


def is_none(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is None
