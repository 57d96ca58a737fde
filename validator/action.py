"""The GitHub Action's entry point (`python -m validator.action`): its inputs become one command line per
model, each validation runs in its own process and output directory, and the step's outputs say how
each went. The summary and the annotations come from the CLI's GitHub reporter."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from validator import commands
from validator.results import verdict_word

MODEL_TIMEOUT_S = 3 * 3600  # every stage is bounded by its own timeouts; this bounds the sum
VALUED_INPUTS = {
    "tracking-uri": "--tracking-uri",
    "stages": "--stages",
    "config": "--config",
    "requests": "--requests",
    "baseline": "--baseline",
    "image-tag": "--image-tag",
    "on-pass-set-alias": "--on-pass-set-alias",
    "report-url": "--report-url",
}
SWITCH_INPUTS = {"push": "--push", "dry-run": "--dry-run"}


@dataclass(frozen=True)
class Validation:
    model_uri: str
    output_dir: Path
    argv: list[str]

    @property
    def junit_xml(self) -> Path:
        return self.output_dir / "junit.xml"


def read_inputs(env: Mapping[str, str]) -> dict[str, str]:
    """`INPUT_MODEL_URI` -> `model-uri`, as action.yml passes them; empty means not given."""
    return {
        name.removeprefix("INPUT_").lower().replace("_", "-"): value.strip()
        for name, value in env.items()
        if name.startswith("INPUT_") and value.strip()
    }


def planned_validations(inputs: Mapping[str, str]) -> list[Validation]:
    models = inputs.get("model-uri", "").split()
    report_dir = Path(inputs.get("report-dir", "mlflow-validator-report"))
    flags = [arg for name, flag in VALUED_INPUTS.items() if name in inputs for arg in (flag, inputs[name])]
    flags += [flag for name, flag in SWITCH_INPUTS.items() if inputs.get(name, "false").lower() == "true"]
    validations = []
    for uri in models:
        # One model: the report directory itself; several: a directory each, named after the model.
        output_dir = report_dir if len(models) == 1 else report_dir / re.sub(r"[^A-Za-z0-9._-]+", "-", uri).strip("-")
        validations.append(Validation(uri, output_dir, ["validate", uri, "--output-dir", str(output_dir), *flags]))
    return validations


def result_record(validation: Validation, exit_code: int) -> dict[str, str | int]:
    image = validation.output_dir / "image.json"
    digest = json.loads(image.read_text()).get("digest", "") if image.is_file() else ""
    return {
        "model-uri": validation.model_uri,
        "verdict": verdict_word(exit_code),
        "exit-code": exit_code,
        "junit-xml": str(validation.junit_xml),
        "report-dir": str(validation.output_dir),
        "image-digest": digest,
    }


def step_outputs(results: list[dict[str, str | int]], report_dir: str) -> str:
    """GITHUB_OUTPUT lines: the overall verdict, and each model's record in `results` (JSON)."""
    exit_code = max((int(r["exit-code"]) for r in results), default=2)
    single = results[0] if len(results) == 1 else {}
    values = {
        "verdict": verdict_word(exit_code),
        "exit-code": str(exit_code),
        "junit-xml": str(single.get("junit-xml", "")),
        "report-dir": str(single.get("report-dir", report_dir)),
        "image-digest": str(single.get("image-digest", "")),
        "results": json.dumps(results),
    }
    lines = []
    for name, value in values.items():
        if "\n" in value:
            delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
            lines += [f"{name}<<{delimiter}", value, delimiter]
        else:
            lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def main(env: Mapping[str, str]) -> int:
    inputs = read_inputs(env)
    validations = planned_validations(inputs)
    if not validations:
        print("::error title=mlflow-validator::the model-uri input names no model")
        return 2
    results = []
    for validation in validations:
        done = commands.run(
            [sys.executable, "-m", "validator", *validation.argv],
            env=env,
            timeout_s=MODEL_TIMEOUT_S,
            check=False,
            on_line=lambda line: print(line, flush=True),
        )
        results.append(result_record(validation, done.returncode))
    if output := env.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as output_file:
            output_file.write(step_outputs(results, inputs.get("report-dir", "mlflow-validator-report")))
    return max(int(r["exit-code"]) for r in results)


if __name__ == "__main__":
    sys.exit(main(os.environ))
