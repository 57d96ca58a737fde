"""What is derived from the declarations for people and editors: the JSON Schema of
mlflow-validator.yaml, the docs' options table, and `mlflow-validator config`'s listing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlflow_validator.settings.declared import SETTINGS, Setting
from mlflow_validator.settings.options import Options
from mlflow_validator.settings.types import BOOL

SCHEMA_FILE = Path(__file__).with_name("mlflow-validator.schema.json")
REDACTED = "***"


def _property(setting: Setting) -> dict[str, Any]:
    return {"description": setting.declaration.help, **setting.declaration.type.schema}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, with every key described; unknown keys are errors."""
    properties: dict[str, Any] = {}
    for setting in (s for s in SETTINGS if s.declaration.in_config_file):
        *parents, name = setting.key.split(".")
        target = properties
        for parent in parents:
            section = target.setdefault(parent, {"type": "object", "properties": {}, "additionalProperties": False})
            target = section["properties"]
        target[name] = _property(setting)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "mlflow-validator.yaml",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def _display(value: Any) -> str:
    if value is None or value == {} or value == ():
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(getattr(item, "value", item)) for item in value)
    return str(value)


def default_text(setting: Setting) -> str:
    """The default as a person reads it: the declaration's words, else the value."""
    return setting.declaration.default_text or f"`{_display(setting.default)}`"


def _code(items: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def options_table() -> str:
    """The docs' options table: one row per setting, in declaration order."""
    rows = [
        "| flag | config key | environment | default | what it sets |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        declaration = setting.declaration
        default = default_text(setting)
        key = f"`{setting.key}`" if declaration.in_config_file else ""
        flag = f"`{declaration.flag}`" if declaration.flag else ""
        if declaration.flag and declaration.type is BOOL:
            flag += f", `--no-{declaration.flag.removeprefix('--')}`"
        what = f"{declaration.help}; {declaration.type.describe}"
        rows.append(f"| {flag} | {key} | {_code(declaration.env)} | {default} | {what} |")
    return "\n".join(rows)


def _redact_urls(text: str) -> str:
    return ",".join(_redact_url(part) for part in text.split(","))


def _redact_url(text: str) -> str:
    parts = urlsplit(text)
    if not parts.password:
        return text
    host = parts.hostname or ""
    netloc = f"{parts.username}:{REDACTED}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(setting: Setting, value: Any) -> str:
    if setting.declaration.secret and isinstance(value, Mapping):
        return json.dumps(dict.fromkeys(value, REDACTED)) if value else "none"
    if isinstance(value, Mapping):
        return json.dumps({k: getattr(v, "value", v) for k, v in value.items()}) if value else "none"
    return _redact_urls(_display(value))


def describe(options: Options) -> str:
    """Every setting's resolved value and where it came from, credentials redacted."""
    lines = []
    for setting in SETTINGS:
        holder = getattr(options, setting.section) if setting.section else options
        value = getattr(holder, setting.field)
        source = options.sources.get(setting.key, "default")
        lines.append(f"{setting.key:<28} {_shown(setting, value):<40} ({source})")
    return "\n".join(lines)
