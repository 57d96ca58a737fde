"""Wall time of each stage, and of MLflow's CLI doing the same work, in one run.

    python benchmarks/stage_times.py [MODEL_DIR] [--repeat N] [--skip-docker]

Prints medians over N runs. The MLflow side: `mlflow models predict --env-manager uv` on the input
example, and once per sample request the venv stage answers (the manual way to get the same
answers; the venv stage answers each twice and times 20 more), and `mlflow models build-docker
--env-manager local` (the docker stage's build). Every image is removed with its layers after each
run, so each build is cold, as in a fresh CI job.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"
PREDICT_ONCE = "mlflow models predict --env-manager uv"
sys.path.insert(0, str(Path(__file__).parent))


def timed(args: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def validator_run(model: Path, stages: str) -> dict[str, float]:
    from harness import validator_command

    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "junit.xml"
        total = timed(validator_command(model, "--stages", stages, "--output-dir", out, "--junit-xml", str(report)))
        times = {"total (incl. fetch and start-up)": total}
        for suite in ET.parse(report).getroot():
            stage = suite.get("name", "").removeprefix("mlflow-validator.")
            if suite.get("skipped") != suite.get("tests"):
                times[stage] = sum(float(case.get("time") or 0) for case in suite.iter("testcase"))
        return times


def predict_command(model: Path, request: Path, content_type: str, output: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "mlflow", "models", "predict", "-m", str(model)),
        *("-i", str(request), "-t", content_type, "-o", str(output), "--env-manager", "uv"),
    ]


def mlflow_run(model: Path, docker: bool) -> dict[str, float]:
    from harness import build_docker_command

    from mlflow_validator.expectations.requests import CSV, Expect, plan_requests
    from mlflow_validator.model.files import ModelFiles
    from mlflow_validator.settings import RequestSettings

    requests = [
        r
        for r in plan_requests(ModelFiles(model, {}), RequestSettings())
        if r.expect is not Expect.REJECTION  # `mlflow models predict` fails on these by design
    ]
    times = {}
    with tempfile.TemporaryDirectory() as out:
        example = model / "serving_input_example.json"
        times[PREDICT_ONCE] = timed(predict_command(model, example, "json", Path(out) / "p.json"))
        started = time.monotonic()
        for request in requests:
            body = Path(out) / f"{request.name}.body"
            body.write_text(request.body)
            content_type = "csv" if request.content_type == CSV else "json"
            subprocess.run(
                predict_command(model, body, content_type, Path(out) / f"{request.name}.out"),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        times[f"mlflow models predict, once per request ({len(requests)})"] = time.monotonic() - started
    if docker:
        tag = "mlflow-validator-benchmark:latest"
        times["mlflow models build-docker --env-manager local"] = timed(build_docker_command(model, tag))
        subprocess.run(["docker", "rmi", "--force", tag], check=True, stdout=subprocess.DEVNULL)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    stages = "static,venv" if args.skip_docker else "static,venv,docker"
    from harness import base_image_trusting_the_ca

    samples: dict[str, list[float]] = {}
    with base_image_trusting_the_ca(args.model):
        measure(args, stages, samples)
    report(args, samples)


def measure(args: argparse.Namespace, stages: str, samples: dict[str, list[float]]) -> None:
    for _ in range(args.repeat):
        for name, seconds in {
            **validator_run(args.model, stages),
            **mlflow_run(args.model, not args.skip_docker),
        }.items():
            samples.setdefault(name, []).append(seconds)


def report(args: argparse.Namespace, samples: dict[str, list[float]]) -> None:
    print(f"model: {args.model}   runs: {args.repeat}   (median wall time, seconds)")
    for name, values in samples.items():
        print(f"  {name:<50} {statistics.median(values):8.2f}   [{', '.join(f'{v:.2f}' for v in values)}]")
    venv = statistics.median(samples["venv"])
    for name in samples:
        if name.startswith("mlflow models predict"):
            print(f"  venv stage vs {name}: {statistics.median(samples[name]) / venv:.2f}x as long")


if __name__ == "__main__":
    main()
