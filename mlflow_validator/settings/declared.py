"""The settings, read off the fields of `Options` and its sections: one flat list of dotted keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlflow_validator.settings.options import SETTING, Declaration, Options


@dataclass(frozen=True)
class Setting:
    key: str  # dotted: config `timeouts: {predict: 5}` is key `timeouts.predict`
    section: str  # the `Options` field holding it ("" at the top level)
    field: str  # its field in that section
    default: Any
    declaration: Declaration


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _declared() -> tuple[Setting, ...]:
    found = []
    for top in dataclasses.fields(Options):
        if SETTING in top.metadata:
            found.append(Setting(top.name, "", top.name, _default(top), top.metadata[SETTING]))
        elif dataclasses.is_dataclass(section := _default(top)):
            for inner in dataclasses.fields(section):
                declaration = inner.metadata[SETTING]
                key = f"{top.name}.{declaration.key or inner.name}"
                found.append(Setting(key, top.name, inner.name, _default(inner), declaration))
    return tuple(found)


SETTINGS = _declared()
BY_KEY = {setting.key: setting for setting in SETTINGS}
SECTIONS = tuple(dict.fromkeys(setting.section for setting in SETTINGS if setting.section))
