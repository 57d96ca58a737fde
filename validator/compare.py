"""Compare two JSON answers: exact for integers, strings and booleans, a tolerance for floats."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from validator.options import Tolerance

MAX_LISTED = 20


@dataclass(frozen=True)
class Difference:
    path: str  # JSON path, e.g. $.predictions[3].score
    expected: Any
    actual: Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers_match(expected: float, actual: float, tolerance: Tolerance) -> bool:
    if math.isnan(expected) or math.isnan(actual):
        return math.isnan(expected) and math.isnan(actual)
    return math.isclose(expected, actual, rel_tol=tolerance.rtol, abs_tol=tolerance.atol)


def compare(expected: Any, actual: Any, tolerance: Tolerance, path: str = "$") -> list[Difference]:
    """Every place where `actual` differs from `expected`."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if list(expected) != list(actual):
            return [Difference(f"{path} (keys)", list(expected), list(actual))]
        return [d for key in expected for d in compare(expected[key], actual[key], tolerance, f"{path}.{key}")]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [Difference(f"{path} (length)", len(expected), len(actual))]
        pairs = enumerate(zip(expected, actual, strict=True))
        return [d for i, (e, a) in pairs for d in compare(e, a, tolerance, f"{path}[{i}]")]
    if _is_number(expected) and _is_number(actual) and float in (type(expected), type(actual)):
        return [] if _numbers_match(float(expected), float(actual), tolerance) else [Difference(path, expected, actual)]
    if type(expected) is not type(actual) or expected != actual:
        return [Difference(path, expected, actual)]
    return []


def describe(differences: list[Difference], expected_name: str, actual_name: str) -> tuple[str, str]:
    """A one-line summary and a listing of the first differences, for a failure message."""
    first = differences[0]
    summary = (
        f"{len(differences)} value(s) differ; first at {first.path}: "
        f"{expected_name} {json.dumps(first.expected)} vs {actual_name} {json.dumps(first.actual)}"
    )
    listing = "\n".join(
        f"{d.path}: {expected_name}={json.dumps(d.expected)} {actual_name}={json.dumps(d.actual)}"
        for d in differences[:MAX_LISTED]
    )
    if len(differences) > MAX_LISTED:
        listing += f"\n… and {len(differences) - MAX_LISTED} more"
    return summary, listing
