"""Compare two JSON answers: exact for integers, strings and booleans, a tolerance for floats."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from mlflow_validator.settings import Tolerance

MAX_LISTED = 20
_ROW = re.compile(r"^\$\.predictions\[(\d+)\](.*)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Difference:
    path: str  # JSON path, e.g. $.predictions[3].score
    expected: Any
    actual: Any

    @property
    def where(self) -> str:
        """The path, with the row and column spelled out for the usual {"predictions": [...]} answer."""
        match = _ROW.match(self.path)
        if not match:
            return self.path
        rest = match.group(2).lstrip(".")
        column = f", column {rest}" if rest and not rest.startswith("[") else f", item {rest}" if rest else ""
        return f"row {match.group(1)}{column} ({self.path})"

    @property
    def size(self) -> float | None:
        """How far apart two numbers are; None when the values are not both numbers."""
        if _is_number(self.expected) and _is_number(self.actual):
            return abs(float(self.actual) - float(self.expected))
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_match(expected: float, actual: float, tolerance: Tolerance) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(expected, actual, rel_tol=tolerance.rtol, abs_tol=tolerance.atol)


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def compare(
    expected: Any, actual: Any, tolerance: Tolerance, path: str = "$", column: str | None = None
) -> list[Difference]:
    """Every place where `actual` differs from `expected`. A float's tolerance is its column's (the
    nearest enclosing key) when the config file sets one, the global one otherwise."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(expected) != list(actual):
            return [Difference(f"{path} (keys)", list(expected), list(actual))]
        return [
            d for key in expected for d in compare(expected[key], actual[key], tolerance, _key_path(path, key), key)
        ]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [Difference(f"{path} (length)", len(expected), len(actual))]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (e, a) in pairs for d in compare(e, a, tolerance, f"{path}[{i}]", column)]
    if _is_number(expected) and _is_number(actual) and float in (type(expected), type(actual)):
        if _numbers_match(float(expected), float(actual), tolerance.for_column(column)):
            return []
        return [Difference(path, expected, actual)]
    if type(expected) is not type(actual) or expected != actual:
        return [Difference(path, expected, actual)]
    return []


def count_values(answer: Any) -> int:
    """How many leaf values an answer holds: the denominator of a changed fraction."""
    if isinstance(answer, dict):
        return sum(count_values(value) for value in answer.values())
    if isinstance(answer, list):
        return sum(count_values(value) for value in answer)
    return 1


def describe(differences: list[Difference], expected_name: str, actual_name: str) -> tuple[str, str]:
    """A one-line summary and a listing of the first differences, for a failure message."""
    first = differences[0]
    summary = (
        f"{len(differences)} value(s) differ; first at {first.where}: "
        f"{expected_name} {json.dumps(first.expected)} vs {actual_name} {json.dumps(first.actual)}"
    )
    listing = "\n".join(
        f"{d.where}: {expected_name}={json.dumps(d.expected)} {actual_name}={json.dumps(d.actual)}"
        for d in differences[:MAX_LISTED]
    )
    if len(differences) > MAX_LISTED:
        listing += f"\n… and {len(differences) - MAX_LISTED} more"
    return summary, listing
