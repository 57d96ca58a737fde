"""What the built-in generated inputs add to a validation, in one run.

    python benchmarks/generated_inputs.py [MODEL_DIR] [--repeat N]

Validates the model through every stage with the generated-inputs check on (its default) and off
(`checks: {generated-inputs: off}`), alternately, after one warm-up run that builds the dependency
image. From each JUnit report: the venv stage's generated-inputs check, and the docker stage's answers
step (which asks the inputs that passed again). The added time is the check plus the answers step's
growth. MLflow's CLI side: `mlflow models predict --env-manager local` asking one generated input, the
manual way to ask one more question of a model. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"
sys.path.insert(0, str(Path(__file__).parent))


def case_time(report: Path, suite: str, name: str) -> float:
    element = ET.parse(report).getroot().find(f"testsuite[@name='mlflow-validator.{suite}']/testcase[@name='{name}']")
    assert element is not None, f"{suite} {name} is not in {report}"
    return float(element.get("time", 0))


def validation(model: Path, generated: bool) -> dict[str, float]:
    from harness import validator_command

    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "mlflow-validator.yaml"
        config.write_text("" if generated else "checks: {generated-inputs: off}\n")
        report = Path(out) / "junit.xml"
        started = time.monotonic()
        command = validator_command(model, "--output-dir", out, "--junit-xml", str(report), "--config", str(config))
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.monotonic() - started
        return {
            "wall": wall,
            "generated-inputs": case_time(report, "venv", "generated-inputs"),
            "docker answers": case_time(report, "docker", "answers"),
            "asked": inputs_asked(Path(out) / "report.json") if generated else 0.0,
        }


def inputs_asked(report: Path) -> float:
    """The check says how many inputs it asked: "54 inputs (seed 1, …)"."""
    checks = json.loads(report.read_text())["checks"]
    message = next(check["message"] for check in checks if check["name"] == "generated-inputs")
    return float(message.split()[0])


def one_mlflow_predict(model: Path) -> float:
    """`mlflow models predict` asking one input of the kind the generator makes."""
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "input.json"
        names = columns(model)
        body.write_text(json.dumps({"dataframe_split": {"columns": names, "data": [[1.5] * len(names)]}}))
        started = time.monotonic()
        command = [sys.executable, "-m", "mlflow", "models", "predict", "-m", str(model), "-i", str(body)]
        subprocess.run(
            [*command, "--env-manager", "local"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return time.monotonic() - started


def columns(model: Path) -> list[str]:
    from mlflow_validator.model.mlmodel import parse_mlmodel

    return [str(spec["name"]) for spec in parse_mlmodel(model / "MLmodel").signature.inputs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = args.model.resolve()

    validation(model, generated=True)  # warm-up: the dependency image, uv's cache
    on, off, predicts = [], [], []
    for _ in range(args.repeat):
        on.append(validation(model, generated=True))
        off.append(validation(model, generated=False))
        predicts.append(one_mlflow_predict(model))

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    check = median(on, "generated-inputs")
    answers_on, answers_off = median(on, "docker answers"), median(off, "docker answers")
    print(f"medians of {args.repeat}, {model.name}")
    print(f"venv generated-inputs check: {check:.2f} s ({median(on, 'asked'):.0f} inputs asked)")
    print(f"docker answers step, inputs asked again vs not: {answers_on:.2f} s vs {answers_off:.2f} s")
    print(f"added by the generated inputs, both stages: {check + answers_on - answers_off:.2f} s (target < 10 s)")
    print(f"whole validation, on vs off: {median(on, 'wall'):.2f} s vs {median(off, 'wall'):.2f} s")
    print(f"one input through `mlflow models predict --env-manager local`: {statistics.median(predicts):.2f} s")


if __name__ == "__main__":
    main()
