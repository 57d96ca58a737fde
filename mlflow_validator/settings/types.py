"""The kinds of value a setting takes: how each is parsed and validated, and its JSON Schema.

One record per kind, so the config-file validation, the environment, the flags and the shipped
JSON Schema cannot disagree about what a value may be.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_validator.checks import Policy
from mlflow_validator.egress.destinations import BadDestination, parse_destination, variables_in
from mlflow_validator.results import SELECTABLE_STAGES, Stage
from mlflow_validator.uv import UV_PLATFORMS


@dataclass(frozen=True)
class ValueType:
    """How a setting's raw value (YAML, an environment string or a flag) becomes a typed value."""

    parse: Callable[[Any], Any]
    schema: Mapping[str, Any]  # the JSON Schema of the value as written in mlflow-validator.yaml
    describe: str  # what the docs say the value is
    # A mapping-valued setting is one key in the config file, not a section of further keys.
    is_mapping: bool = False
    keys: tuple[str, ...] = ()  # the keys such a mapping may have, when they are fixed
    metavar: str = ""  # what --help shows for the flag's value when the setting's name does not say it


def did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _non_negative(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != float(value) or int(value) < 1:
        raise ValueError("must be a whole number >= 1")
    return int(value)


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0 <= number <= 1:
        raise ValueError("must be between 0 and 1")
    return number


_MEMORY = re.compile(r"(?P<number>[0-9]+)\s*(?P<unit>[kmg]?)i?b?", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "m": 1, "g": 1024, "": 1}


def _memory_mib(value: Any) -> int:
    """Docker's memory notation (512m, 2g) or a whole number of MiB, as MiB."""
    match = _MEMORY.fullmatch(str(value).strip()) if not isinstance(value, bool) else None
    mib = int(int(match["number"]) * _MIB_PER_UNIT[match["unit"].lower()]) if match else 0
    if mib < 6:  # docker's own minimum
        raise ValueError("must be a memory size of at least 6 MiB, like 512m, 2g or a number of MiB")
    return mib


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _text(value: Any) -> str:
    if isinstance(value, (Mapping, list)):
        raise ValueError("must be a string")
    return str(value)


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _urls(value: Any) -> tuple[str, ...]:
    """Space-separated, as PIP_EXTRA_INDEX_URL has them, or a list."""
    items = value.split() if isinstance(value, str) else [_text(item) for item in value]
    for item in items:
        if "://" not in item:
            raise ValueError(f"'{item}' is not a URL")
    return tuple(items)


def _egress(value: Any) -> tuple[str, ...]:
    """Entries as written (a `${NAME}` is expanded once the job's environment is known), each checked
    as far as it can be before that."""
    items = value.replace(",", " ").split() if isinstance(value, str) else [_text(item) for item in value]
    for item in items:
        if not variables_in(item):
            try:
                parse_destination(item)
            except BadDestination as exc:
                raise ValueError(str(exc)) from None
    return tuple(items)


# docker's reference grammar (distribution/reference): [registry[:port]/]path-components[:tag]
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?")


def _image_reference(value: Any) -> str:
    text = _text(value)
    if not _REFERENCE.fullmatch(text):
        raise ValueError("not an image reference like registry.example.com:5000/team/model:1.4 (lowercase name)")
    return text


def parse_stages(value: Any) -> tuple[Stage, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    known = [stage.value for stage in SELECTABLE_STAGES]
    stages = []
    for raw in names:
        name = str(raw).strip()
        if name not in known:
            raise ValueError(f"unknown stage '{name}'{did_you_mean(name, known)}; stages are {', '.join(known)}")
        stages.append(Stage(name))
    if not stages:
        raise ValueError("name at least one stage")
    return tuple(stage for stage in Stage if stage in stages)


def parse_platforms(value: Any) -> tuple[str, ...]:
    names = [str(raw).strip() for raw in (value.split(",") if isinstance(value, str) else list(value))]
    known = list(UV_PLATFORMS)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown platform '{name}'{did_you_mean(name, known)}; platforms are {', '.join(known)}")
    if not names:
        raise ValueError("name at least one platform")
    return tuple(dict.fromkeys(names))


def parse_policy(value: Any) -> Policy:
    if isinstance(value, bool):  # YAML reads a bare `off` as false and `on` as true
        return Policy.ERROR if value else Policy.OFF
    known = [policy.value for policy in Policy]
    if str(value) not in known:
        raise ValueError(f"unknown policy{did_you_mean(str(value), known)}; policies are {', '.join(known)}")
    return Policy(str(value))


def one_of(*choices: str) -> ValueType:
    def parse(value: Any) -> str:
        if str(value) not in choices:
            raise ValueError(
                f"unknown value{did_you_mean(str(value), list(choices))}; it is one of {', '.join(choices)}"
            )
        return str(value)

    described = ", ".join(f"`{choice}`" for choice in choices)
    return ValueType(parse, {"enum": list(choices)}, described, metavar="{" + ",".join(choices) + "}")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not _ENV_NAME.fullmatch(str(name)):
            raise ValueError(f"'{name}' is not an environment variable name")
    return tuple(str(name) for name in names)


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _module_names(value: Any) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    for name in names:
        if not _MODULE.fullmatch(str(name).strip()):
            raise ValueError(f"'{name}' is not a module name (like team_features or team.models)")
    return tuple(str(name).strip() for name in names)


def _env_values(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("must map variable names to values")
    _env_names(list(value))
    return {
        str(name): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for name, v in value.items()
    }


def _column_tolerances(value: Any) -> dict[str, dict[str, float]]:
    if not isinstance(value, Mapping):
        raise ValueError("must map column names to {rtol: …, atol: …}")
    columns = {}
    for column, bounds in value.items():
        if not isinstance(bounds, Mapping) or not bounds or not set(bounds) <= {"rtol", "atol"}:
            raise ValueError(f"column '{column}' must be a mapping with rtol and/or atol")
        columns[str(column)] = {str(k): _non_negative(v) for k, v in bounds.items()}
    return columns


# The team's own checks take a policy by test file or node id: `test_rules.py` or `test_rules.py::test_sum`.
TEAM_CHECK_KEY = re.compile(r"\.py(::.+)?$")


def policies_type(checks: list[str]) -> ValueType:
    """`checks: {name: error|warn|off}` for the checks a policy applies to, and the team's tests."""

    def parse(value: Any) -> dict[str, Policy]:
        if not isinstance(value, Mapping):
            raise ValueError("must map check names to error, warn or off")
        return {str(name): parse_policy(policy) for name, policy in value.items()}

    policy_schema = {"enum": [*(policy.value for policy in Policy), True, False]}
    return ValueType(
        parse,
        {
            "type": "object",
            "properties": dict.fromkeys(checks, policy_schema),
            "patternProperties": {TEAM_CHECK_KEY.pattern: policy_schema},
            "additionalProperties": False,
        },
        "a mapping of check names to `error`, `warn` or `off`",
        is_mapping=True,
        keys=tuple(checks),
    )


TEXT = ValueType(_text, {"type": "string"}, "a string")
PATH = ValueType(_path, {"type": "string"}, "a path")
BOOL = ValueType(_bool, {"type": "boolean"}, "true or false")
SECONDS = ValueType(_positive, {"type": "number", "exclusiveMinimum": 0}, "seconds (> 0)")
POSITIVE = ValueType(_positive, {"type": "number", "exclusiveMinimum": 0}, "a number > 0")
NON_NEGATIVE = ValueType(_non_negative, {"type": "number", "minimum": 0}, "a number >= 0", metavar="NUMBER")
WHOLE = ValueType(_positive_int, {"type": "integer", "minimum": 1}, "a whole number >= 1")
MEMORY = ValueType(
    _memory_mib,
    {"type": ["integer", "string"], "pattern": "^[0-9]+\\s*[kKmMgG]?[iI]?[bB]?$", "minimum": 6},
    "MiB, or docker's notation (512m, 2g)",
    metavar="SIZE",
)
URLS = ValueType(
    _urls,
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "URLs, space-separated or a list",
    metavar="URL",
)
EGRESS = ValueType(
    _egress,
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "`host:port` or URLs, space-separated or a list; `${NAME}` takes a job variable's value",
    metavar="HOST:PORT",
)
IMAGE_REFERENCE = ValueType(
    _image_reference, {"type": "string"}, "NAME:TAG, as `docker tag` takes it", metavar="NAME:TAG"
)
FRACTION = ValueType(_fraction, {"type": "number", "minimum": 0, "maximum": 1}, "a fraction from 0 to 1")
STAGES = ValueType(
    parse_stages,
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"enum": [s.value for s in SELECTABLE_STAGES]}, "minItems": 1},
        ]
    },
    "a list (or comma-separated string) of " + ", ".join(s.value for s in SELECTABLE_STAGES),
    metavar="STAGE[,STAGE...]",
)
PLATFORMS = ValueType(
    parse_platforms,
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"enum": list(UV_PLATFORMS)}, "minItems": 1}]},
    "a list (or comma-separated string) of " + ", ".join(UV_PLATFORMS),
    metavar="PLATFORM[,PLATFORM...]",
)
ENV_NAMES = ValueType(
    _env_names,
    {"type": "array", "items": {"type": "string", "pattern": _ENV_NAME.pattern}},
    "a list of environment variable names",
)
MODULE_NAMES = ValueType(
    _module_names,
    {"type": "array", "items": {"type": "string", "pattern": _MODULE.pattern}},
    "a list of module names",
)
ENV_VALUES = ValueType(
    _env_values,
    {"type": "object", "propertyNames": {"pattern": _ENV_NAME.pattern}},
    "a mapping of variable names to values",
    is_mapping=True,
)
COLUMN_TOLERANCES = ValueType(
    _column_tolerances,
    {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {"rtol": {"type": "number", "minimum": 0}, "atol": {"type": "number", "minimum": 0}},
            "additionalProperties": False,
            "minProperties": 1,
        },
    },
    "a mapping of output columns to `{rtol: …, atol: …}`",
    is_mapping=True,
)
