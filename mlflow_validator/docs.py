"""The parts of the documentation and the config file's JSON Schema that are derived from their single
declarations (the check registry, the settings, action.yml's inputs, the component's `spec`), so they
cannot drift from the code.

`scripts/update-docs` rewrites them; a unit test fails when they are stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mlflow_validator.checks import CHECKS
from mlflow_validator.settings.docs import SCHEMA_FILE, options_table, render_json_schema

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ACTION = ROOT / "action.yml"
COMPONENT = ROOT / "templates" / "validate.yml"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n).*?(<!-- end generated -->)", re.DOTALL)


def check_table() -> str:
    rows = ["| stage | check | fails when | policy |", "| --- | --- | --- | --- |"]
    for check in CHECKS:
        policy = "yes" if check.has_policy else ""
        rows.append(f"| {check.stage.value} | `{check.name}` | {check.fails_when} | {policy} |")
    return "\n".join(rows)


def _inputs_table(inputs: Mapping[str, Mapping[str, Any]]) -> str:
    rows = ["| input | default | what it does |", "| --- | --- | --- |"]
    for name, declared in inputs.items():
        default = declared.get("default", "")
        shown = f"`{str(default).lower() if isinstance(default, bool) else default}`" if default != "" else ""
        rows.append(f"| `{name}` | {shown} | {declared.get('description', '')} |")
    return "\n".join(rows)


def action_inputs_table() -> str:
    return _inputs_table(yaml.safe_load(ACTION.read_text())["inputs"])


def component_inputs_table() -> str:
    spec = next(yaml.safe_load_all(COMPONENT.read_text()))
    return _inputs_table(spec["spec"]["inputs"])


GENERATED = {
    "checks": check_table,
    "options": options_table,
    "action-inputs": action_inputs_table,
    "component-inputs": component_inputs_table,
}


def documents() -> list[Path]:
    """Every page that may hold a generated block: the README and the documentation site's pages."""
    return [README, *sorted(DOCS.glob("*.md"))]


def with_generated_blocks(text: str) -> str:
    """`text` with every generated block rendered anew."""
    return _BLOCK.sub(lambda m: m.group(1) + GENERATED[m.group("name")]() + "\n" + m.group(3), text)


def update(schema: Path = SCHEMA_FILE) -> None:
    for page in documents():
        page.write_text(with_generated_blocks(page.read_text()))
    schema.write_text(render_json_schema())


if __name__ == "__main__":
    update()
