"""The GitHub Action's entry point (`python -m mlflow_validator.batch.action`): its inputs become one `validate` command
line (one model, several, or a manifest's entries), and the step's outputs say how each model went. The
summary and the annotations come from the CLI's GitHub reporter (one model) or the batch (several)."""

from __future__ import annotations

import io
import json
import os
import secrets
import shlex
import sys
from collections.abc import Iterable, Mapping
from contextlib import redirect_stdout
from pathlib import Path

from mlflow_validator import cli, commands
from mlflow_validator.batch.run import CLEANUP_GRACE_S, MODEL_TIMEOUT_S, Target, TargetResult, overall_verdict
from mlflow_validator.outputs import DEFAULT_DIR, JUNIT_FILE, REPORT_FILE, RESULTS_FILE, SUMMARY_FILE
from mlflow_validator.reporters.github import append_summary
from mlflow_validator.reporters.record import from_json
from mlflow_validator.results import ModelIdentity, ValidationReport
from mlflow_validator.settings.declared import SETTINGS
from mlflow_validator.settings.types import BOOL

# An input named after a setting's flag passes that setting on (`stages` -> --stages, `push: true` -> --push):
# action.yml declares which settings are inputs, the settings declare their flags.
SETTING_INPUTS = {
    setting.declaration.flag.removeprefix("--"): setting for setting in SETTINGS if setting.declaration.flag
}
# The several-models mode's own options, which are not settings.
SELECTION_INPUTS = {"manifest": "--manifest", "base": "--base", "entry": "--entry", "jobs": "--jobs"}
# The Action's own: what to validate, whether to plan, where the reports go, and any other flags.
OWN_INPUTS = frozenset({"model-uri", "plan", "report-dir", "args"})
DEFAULT_REPORT_DIR = str(DEFAULT_DIR)  # inputs are text


def read_inputs(env: Mapping[str, str]) -> dict[str, str]:
    """`INPUT_MODEL_URI` -> `model-uri`, as action.yml passes them; empty means not given."""
    return {
        name.removeprefix("INPUT_").lower().replace("_", "-"): value.strip()
        for name, value in env.items()
        if name.startswith("INPUT_") and value.strip()
    }


def input_flags(inputs: Mapping[str, str], names: Iterable[str] | None = None) -> list[str]:
    """The flags the inputs (or those of `names`) stand for. A switch passes only when true: an input's default
    `false` must not override the config file."""
    flags: list[str] = []
    for name, value in inputs.items():
        if names is not None and name not in names:
            continue
        if name in SELECTION_INPUTS:
            flags += [SELECTION_INPUTS[name], value]
        elif (setting := SETTING_INPUTS.get(name)) is not None:
            flag = setting.declaration.flag
            if setting.declaration.type is not BOOL:
                flags += [flag, value]
            elif value.lower() == "true":
                flags.append(flag)
    return flags


def command_line(inputs: Mapping[str, str]) -> list[str]:
    models = inputs.get("model-uri", "").split()
    report_dir = inputs.get("report-dir", DEFAULT_REPORT_DIR)
    return ["validate", *models, "--output-dir", report_dir, *input_flags(inputs), *shlex.split(inputs.get("args", ""))]


def result_records(inputs: Mapping[str, str], exit_code: int) -> list[dict[str, str | int]]:
    """Each model's record: the batch wrote them (several models, a manifest); one model's is made here."""
    report_dir = Path(inputs.get("report-dir", DEFAULT_REPORT_DIR))
    uri = inputs.get("model-uri", "")
    if inputs.get("manifest") or len(uri.split()) > 1:
        results = report_dir / RESULTS_FILE
        records: list[dict[str, str | int]] = json.loads(results.read_text()) if results.is_file() else []
        return records
    report_file = report_dir / REPORT_FILE
    report = from_json(report_file.read_text()) if report_file.is_file() else ValidationReport(ModelIdentity(uri, uri))
    return [TargetResult(Target(uri, uri), exit_code, report, report_dir).record()]


def step_outputs(results: list[dict[str, str | int]], exit_code: int, report_dir: str) -> str:
    """GITHUB_OUTPUT lines: the overall verdict, and each model's record in `results` (JSON)."""
    single = results[0] if len(results) == 1 else {}
    values = {
        "verdict": overall_verdict(results, exit_code),
        "exit-code": str(exit_code),
        "junit-xml": str(single.get("junit-xml", Path(report_dir) / JUNIT_FILE)),
        "report-dir": report_dir,
        "image-digest": str(single.get("image-digest", "")),
        "summary-file": str(Path(report_dir) / SUMMARY_FILE),
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


def _cli(argv: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """A subcommand run in this process: its exit code and what it printed."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        exit_code = cli.main(argv, env)
    return exit_code, printed.getvalue()


def plan_outputs(inputs: Mapping[str, str], env: Mapping[str, str]) -> int:
    """`plan: true`: the manifest entries to validate, as outputs a matrix reads (`matrix`, `count`)."""
    argv = ["plan", "--manifest", inputs.get("manifest", "mlflow-models.yaml")]
    argv += input_flags(inputs, ("base", "tracking-uri"))
    exit_code, printed = _cli(argv, env)
    matrix = printed.strip()
    if exit_code == 0 and (output := env.get("GITHUB_OUTPUT")):
        with open(output, "a", encoding="utf-8") as output_file:
            output_file.write(f"matrix={matrix}\ncount={len(json.loads(matrix)['include'])}\n")
    print(matrix)
    return exit_code


def preflight(inputs: Mapping[str, str], env: Mapping[str, str]) -> int | None:
    """`doctor` first, with the same settings: what cannot work here is found in seconds, and opens the summary.
    None when everything asked for works."""
    models = inputs.get("model-uri", "").split()
    argv = ["doctor", *models[:1], *input_flags(inputs, SETTING_INPUTS)]  # `args` may hold flags only validate takes
    exit_code, printed = _cli(argv, env)
    print(printed, end="", flush=True)
    if exit_code == 0:
        return None
    findings = printed.strip()
    append_summary(env, f"## 💥 mlflow-validator cannot validate here\n\n```\n{findings}\n```\n")
    if output := env.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as output_file:
            output_file.write(f"verdict=error\nexit-code={exit_code}\n")
    return exit_code


def main(env: Mapping[str, str]) -> int:
    inputs = read_inputs(env)
    if inputs.get("plan", "false").lower() == "true":
        return plan_outputs(inputs, env)
    if not inputs.get("model-uri") and not inputs.get("manifest"):
        print("::error title=mlflow-validator::give the model-uri input, or the manifest input")
        return 2
    if (trouble := preflight(inputs, env)) is not None:
        return trouble
    done = commands.run(
        [sys.executable, "-m", "mlflow_validator", *command_line(inputs)],
        env=env,
        timeout_s=MODEL_TIMEOUT_S,
        check=False,
        on_line=lambda line: print(line, flush=True),
        grace_s=CLEANUP_GRACE_S,
    )
    if output := env.get("GITHUB_OUTPUT"):
        report_dir = inputs.get("report-dir", DEFAULT_REPORT_DIR)
        with open(output, "a", encoding="utf-8") as output_file:
            output_file.write(step_outputs(result_records(inputs, done.returncode), done.returncode, report_dir))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(os.environ))
