"""Does an answer conform to the output signature? MLflow does not enforce outputs; we do."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mlflow_validator.model.mlmodel import Spec

MAX_PROBLEMS = 5
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "long": (int,),
    "integer": (int,),
    "double": (int, float),
    "float": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "binary": (str,),
    "datetime": (str,),
}


def _type_problem(value: Any, mlflow_type: str, where: str) -> str:
    allowed = _PYTHON_TYPES.get(mlflow_type)
    if allowed is None or value is None:
        return ""  # a type we do not check (array, object, …) or a missing optional value
    if isinstance(value, bool) and bool not in allowed:
        return f"{where} is a boolean, the signature says {mlflow_type}"
    if not isinstance(value, allowed):
        return f"{where} is {type(value).__name__} {json.dumps(value)[:40]}, the signature says {mlflow_type}"
    return ""


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _leaves(value: Any) -> list[Any]:
    return [leaf for item in value for leaf in _leaves(item)] if isinstance(value, list) else [value]


def _tensor_type(dtype: str) -> str:
    """The MLflow column type whose JSON values a numpy dtype's values serialize like."""
    if dtype.startswith(("int", "uint")):
        return "long"
    if dtype.startswith("float"):
        return "double"
    return "boolean" if dtype == "bool" else ""


def _tensor_problems(predictions: Any, spec: Spec) -> list[str]:
    tensor = spec.get("tensor-spec", {})
    expected = tensor.get("shape", [])
    actual = _shape(predictions)
    if len(actual) != len(expected) or any(e not in (-1, a) for e, a in zip(expected, actual, strict=False)):
        return [f"the answer has shape {actual}, the signature says {expected}"]
    mlflow_type = _tensor_type(str(tensor.get("dtype", "")))
    problems = (_type_problem(leaf, mlflow_type, f"value {i}") for i, leaf in enumerate(_leaves(predictions)))
    found = [problem.replace(f"says {mlflow_type}", f"says {tensor.get('dtype')}") for problem in problems if problem]
    return found[:MAX_PROBLEMS]


def _column_problems(predictions: Any, columns: Sequence[Spec]) -> list[str]:
    if not isinstance(predictions, list):
        return [f"the answer is a {type(predictions).__name__}, the signature declares rows"]
    names = [c.get("name") for c in columns]
    problems = []
    for i, row in enumerate(predictions):
        if isinstance(row, dict):
            expected_keys = [n for n in names if n]
            missing = [c["name"] for c in columns if c.get("name") and c.get("required", True) and c["name"] not in row]
            extra = [key for key in row if key not in expected_keys]
            if missing or extra:
                problems.append(f"row {i} has columns {list(row)}, the signature declares {expected_keys}")
            problems += [
                problem
                for c in columns
                if c.get("name") in row
                if (problem := _type_problem(row[c["name"]], c.get("type", ""), f"row {i} column '{c['name']}'"))
            ]
        elif len(columns) == 1:
            if problem := _type_problem(row, columns[0].get("type", ""), f"row {i}"):
                problems.append(problem)
        else:
            problems.append(f"row {i} is a {type(row).__name__}, the signature declares columns {names}")
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def output_problems(answer: Any, outputs: Sequence[Spec]) -> list[str]:
    """Empty when `answer` ({"predictions": …}) conforms to the output signature's specs."""
    if not outputs:
        return []
    if not isinstance(answer, dict) or "predictions" not in answer:
        return ["the answer has no 'predictions' key"]
    predictions = answer["predictions"]
    if outputs[0].get("type") == "tensor":
        return _tensor_problems(predictions, outputs[0])
    return _column_problems(predictions, outputs)[:MAX_PROBLEMS]
