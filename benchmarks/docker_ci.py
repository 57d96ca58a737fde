"""The docker stage as CI runs it: cold (an empty layer cache, a hosted runner), warm (a new model version
with an unchanged lock, a long-lived runner), and a model that cannot load in the container. Warm is
measured twice: for the example, whose requirements MLflow's own image already holds, and for a LightGBM
model, whose requirements MLflow's image lacks and its build installs again for every version.

    python benchmarks/docker_ci.py [--repeat N]

MLflow's side is its manual sequence doing the same work in the same run: `mlflow models predict
--env-manager uv` on the input example, `mlflow models build-docker`, `docker run`, wait for /ping, one
query to /invocations. The validator's side is one whole validation (static, venv, docker). "Cold"
removes every image but the base image and prunes the build cache before each side; "warm" validates a
second version of the model (retrained, same requirements) after the first on the same engine. Medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

sys.path.insert(0, str(Path(__file__).parent))
from harness import base_image_trusting_the_ca, build_docker_command, validator_command

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"
LOADING_MODEL = Path(__file__).parents[1] / "tests" / "integration" / "models" / "loading_model.py"
DOCKER = os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker")
MLFLOW_TAG = "mlflow-validator-benchmark/mlflow-cli:latest"


def docker(*args: str, timeout: float = 600) -> str:
    return subprocess.run([DOCKER, *args], check=True, capture_output=True, text=True, timeout=timeout).stdout


def empty_cache() -> None:
    """What either side built is removed, and the build cache: the engine of a fresh hosted runner,
    which has the base image and nothing else of this model's."""
    for image in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split():
        if image.startswith(("mlflow-validator/", MLFLOW_TAG)):
            subprocess.run([DOCKER, "rmi", image], capture_output=True, check=False, timeout=120)
    docker("image", "prune", "--force")
    docker("builder", "prune", "--all", "--force")


def validation(model: Path, out: Path, *flags: str) -> tuple[float, ET.Element]:
    started = time.monotonic()
    command = validator_command(model, "--output-dir", str(out), *flags)
    subprocess.run(command, capture_output=True, timeout=1800, check=False)
    return time.monotonic() - started, ET.parse(out / "junit.xml").getroot()


def docker_stage_seconds(report: ET.Element) -> float:
    suite = report.find("testsuite[@name='mlflow-validator.docker']")
    assert suite is not None
    return sum(float(case.get("time") or 0) for case in suite.iter("testcase"))


def mlflow_sequence(model: Path, out: Path) -> float:
    """What a user runs by hand: predict in a fresh env, build the image, run it, wait, query once."""
    example = model / "serving_input_example.json"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "mlflow", "models", "predict", "-m", str(model), "-i", str(example),
         "-t", "json", "-o", str(out / "predicted.json"), "--env-manager", "uv"],
        capture_output=True, timeout=1800, check=True,
    )  # fmt: skip
    subprocess.run(build_docker_command(model, MLFLOW_TAG), capture_output=True, timeout=1800, check=True)
    container = docker("run", "--detach", "--rm", "--publish", "127.0.0.1::8080", MLFLOW_TAG).strip()
    try:
        port = docker("port", container, "8080").split(":")[-1].strip()
        session = requests.Session()
        session.trust_env = False
        for attempt in Retrying(
            stop=stop_after_delay(300), wait=wait_fixed(0.5), retry=retry_if_exception_type(requests.RequestException)
        ):
            with attempt:
                session.get(f"http://127.0.0.1:{port}/ping", timeout=5).raise_for_status()
        answer = session.post(
            f"http://127.0.0.1:{port}/invocations",
            data=example.read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        answer.raise_for_status()
    finally:
        docker("stop", container)
    return time.monotonic() - started


def new_version(directory: Path) -> Path:
    """The example model retrained with other settings: new weights, the same requirements."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True, as_frame=True)
    requirements = (EXAMPLE / "requirements.txt").read_text().split()
    model = directory / "iris-v2"
    classifier = LogisticRegression(C=0.5, max_iter=300).fit(features, target)
    mlflow.sklearn.save_model(classifier, model, input_example=features.head(3), pip_requirements=requirements)
    # MLflow writes this machine's pip into python_env.yaml's build dependencies: keep the example's, so that
    # only the weights differ (another pip is another lock, and another dependency image).
    shutil.copyfile(EXAMPLE / "python_env.yaml", model / "python_env.yaml")
    return model


def lightgbm_versions(directory: Path) -> tuple[Path, Path]:
    """Two versions of a LightGBM classifier (more trees in the second), with the same pinned requirements."""
    from importlib.metadata import version

    import lightgbm
    import mlflow
    from sklearn.datasets import load_iris

    features, target = load_iris(return_X_y=True, as_frame=True)
    names = ("mlflow", "lightgbm", "numpy", "pandas", "scikit-learn", "scipy")
    requirements = [f"{name}=={version(name)}" for name in names]
    versions = []
    for trees in (20, 40):
        model = directory / f"lightgbm-{trees}"
        classifier = lightgbm.LGBMClassifier(n_estimators=trees, verbose=-1).fit(features, target)
        mlflow.lightgbm.save_model(classifier, model, input_example=features.head(3), pip_requirements=requirements)
        versions.append(model)
    return versions[0], versions[1]


def cannot_load_model(directory: Path) -> Path:
    import mlflow
    import pandas as pd

    model = directory / "cannot-load"
    os.environ["LOADING_MODEL_BEING_LOGGED"] = "1"  # MLflow loads it while saving: let that succeed
    mlflow.pyfunc.save_model(
        model,
        python_model=str(LOADING_MODEL),
        input_example=pd.DataFrame({"x": [1.0, 2.0]}),
        pip_requirements=(EXAMPLE / "requirements.txt").read_text().split(),
        model_config={"mode": "crash"},
    )
    del os.environ["LOADING_MODEL_BEING_LOGGED"]
    return model


def start_container_seconds(model: Path, out: Path) -> float:
    """How long after the container started the validator failed it (the start-container check's time)."""
    _, report = validation(model, out, "--stages", "docker")  # the venv stage would fail it first
    case = report.find("testsuite[@name='mlflow-validator.docker']/testcase[@name='start-container']")
    assert case is not None and case.find("failure") is not None, "the broken model did not fail start-container"
    return float(case.get("time") or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    with base_image_trusting_the_ca(EXAMPLE), tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        version_two, broken = new_version(work), cannot_load_model(work)
        lightgbm_one, lightgbm_two = lightgbm_versions(work)
        for run in range(args.repeat):
            out = work / f"run{run}"
            empty_cache()
            cold, _ = validation(EXAMPLE, out / "cold")
            record("cold: mlflow-validator, whole validation", cold)
            warm, report = validation(version_two, out / "warm")
            record("warm: mlflow-validator, whole validation", warm)
            record("warm: mlflow-validator, docker stage", docker_stage_seconds(report))
            record("cannot load: failed after the container started", start_container_seconds(broken, out / "broken"))
            empty_cache()
            (out / "mlflow").mkdir()
            record("cold: MLflow CLI sequence", mlflow_sequence(EXAMPLE, out / "mlflow"))
            record("warm: MLflow CLI sequence", mlflow_sequence(version_two, out / "mlflow"))
            docker("rmi", MLFLOW_TAG)
            # LightGBM: the first version makes each side's caches (not measured), the second is measured.
            validation(lightgbm_one, out / "lightgbm-one")
            warm, report = validation(lightgbm_two, out / "lightgbm-two")
            record("warm LightGBM: mlflow-validator, whole validation", warm)
            record("warm LightGBM: mlflow-validator, docker stage", docker_stage_seconds(report))
            mlflow_sequence(lightgbm_one, out / "mlflow")
            record("warm LightGBM: MLflow CLI sequence", mlflow_sequence(lightgbm_two, out / "mlflow"))
            docker("rmi", MLFLOW_TAG)
    print(f"runs: {args.repeat}   (median wall time, seconds)")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        print(f"  {name:<52} {medians[name]:8.1f}   [{', '.join(f'{v:.1f}' for v in values)}]")
    for kind in ("cold", "warm", "warm LightGBM"):
        ratio = medians[f"{kind}: mlflow-validator, whole validation"] / medians[f"{kind}: MLflow CLI sequence"]
        print(f"  {kind}: mlflow-validator / MLflow CLI sequence: {ratio:.2f}x")


if __name__ == "__main__":
    main()
