"""The parts of the README and the config file's JSON Schema that are derived from the declarations
(the check registry and the settings), so they cannot drift from the code.

`scripts/update-docs` rewrites them; a unit test fails when they are stale.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlflow_validator.checks import CHECKS
from mlflow_validator.settings.docs import SCHEMA_FILE, options_table, render_json_schema

README = Path(__file__).parent.parent / "README.md"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n).*?(<!-- end generated -->)", re.DOTALL)


def check_table() -> str:
    rows = ["| stage | check | fails when | policy |", "| --- | --- | --- | --- |"]
    for check in CHECKS:
        policy = "yes" if check.has_policy else ""
        rows.append(f"| {check.stage.value} | `{check.name}` | {check.fails_when} | {policy} |")
    return "\n".join(rows)


GENERATED = {"checks": check_table, "options": options_table}


def with_generated_blocks(readme: str) -> str:
    """The README with every generated block rendered anew."""
    return _BLOCK.sub(lambda m: m.group(1) + GENERATED[m.group("name")]() + "\n" + m.group(3), readme)


def update(readme: Path = README, schema: Path = SCHEMA_FILE) -> None:
    readme.write_text(with_generated_blocks(readme.read_text()))
    schema.write_text(render_json_schema())


if __name__ == "__main__":
    update()
