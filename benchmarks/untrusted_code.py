"""What treating the model as untrusted code costs, in one run.

    python benchmarks/untrusted_code.py [MODEL_DIR] [--repeat N]

1. The static stage, pickle analysis included: the sum of its checks' times in the JUnit report, and
   the wall time of the whole command (Python and MLflow start-up, fetch).
2. The cage, per backend: the venv stage's model process (load the model, answer every sample request
   twice, 20 latency samples: what `mlflow models predict` does, uncaged) run in the same virtualenv with
   and without bubblewrap's cage (bubblewrap, setpriv and prlimit as the venv stage builds them for this
   user, the watch over its processes included), and in the container cage on the Docker engine with a
   warm dependency image (create, copy the model in, start, first answers, remove). Prints medians and
   the differences. The dependency image is the one a first validation with `--sandbox-backend container`
   builds or reuses (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"
sys.path.insert(0, str(Path(__file__).parent))


def timed(args: list[str | Path], **kwargs: object) -> float:
    started = time.monotonic()
    subprocess.run([str(arg) for arg in args], check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.monotonic() - started


def timed_in_cage(argv: list[str | Path], env: dict[str, str], cwd: Path, bounds: object, watched: Any) -> float:
    started = time.monotonic()
    process = subprocess.Popen([str(arg) for arg in argv], env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    with watched(process, bounds):
        assert process.wait() == 0
    return time.monotonic() - started


def static_stage(model: Path) -> tuple[float, float]:
    """(sum of the static checks' times, wall time of the command)."""
    from harness import validator_command

    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "junit.xml"
        wall = timed(validator_command(model, "--stages", "static", "--output-dir", out, "--junit-xml", str(report)))
        suite = ET.parse(report).getroot().find("testsuite[@name='mlflow-validator.static']")
        assert suite is not None
        return sum(float(case.get("time", 0)) for case in suite.iter("testcase")), wall


def prepared_venv(model: Path, work: Path) -> Path:
    """The model's requirements in a fresh uv virtualenv, as the venv stage makes it."""
    from uv import find_uv_bin

    uv = find_uv_bin()
    subprocess.run([uv, "venv", "-q", "--no-project", "--python", sys.executable, work / "venv"], check=True)
    python = work / "venv" / "bin" / "python"
    subprocess.run([uv, "pip", "install", "-q", "--python", python, "-r", model / "requirements.txt"], check=True)
    return python


def written_plan(model: Path, work: Path) -> Path:
    """The plan directory as the venv stage writes it: plan.json and the request bodies beside it."""
    from mlflow_validator.expectations.requests import plan_requests
    from mlflow_validator.model.files import ModelFiles
    from mlflow_validator.settings import RequestSettings

    (work / "plan" / "requests").mkdir(parents=True)
    entries = []
    for request in plan_requests(ModelFiles(model, {}), RequestSettings()):
        body = f"requests/{request.name}.body"
        (work / "plan" / body).write_text(request.body)
        entries.append({"name": request.name, "body_file": body, "content_type": request.content_type})
    (work / "plan" / "plan.json").write_text(json.dumps({"requests": entries, "latency_samples": 20}))
    return work / "plan"


def dependency_image(model: Path) -> str:
    """The tag of the dependency image a validation with the container backend built or reused."""
    from harness import validator_command

    with tempfile.TemporaryDirectory() as out:
        command = validator_command(model, "--stages", "venv", "--sandbox-backend", "container", "--output-dir", out)
        console = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    found = re.search(r"mlflow-validator/serving-dependencies:[0-9a-f]{16}", console)
    assert found, console
    return found.group(0)


def timed_in_container(image: str, model: Path, plan: Path, work: Path) -> float:
    """From `docker create` to the first answers, the container removed: what the venv stage does."""
    from mlflow_validator.stages.docker.engine import Docker, docker_env
    from mlflow_validator.stages.venv.cage import Bounds
    from mlflow_validator.stages.venv.container_cage import (
        CONTAINER_UIDS,
        FILES,
        Channel,
        ContainerCage,
        created,
        started,
    )
    from mlflow_validator.stages.venv.stage import PREDICTOR

    docker = Docker(os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker"), docker_env(os.environ))
    bounds = Bounds(memory_mb=8192, cpu_seconds=600, processes=256)
    uid = CONTAINER_UIDS.start + os.getpid() % len(CONTAINER_UIDS)
    cage = ContainerCage(image, f"mlflow-validator-benchmark-{time.monotonic_ns()}", {}, uid, bounds)
    command = ["python", "-I", f"{FILES}/predictor.py", f"{FILES}/model", f"{FILES}/plan/plan.json", "-"]
    argv = created(cage, command, {"HOME": "/home/model", "TMPDIR": "/home/model"}, passed=[])
    files = {"model": model, "plan": plan, "predictor.py": PREDICTOR}
    started_at = time.monotonic()
    with started(docker, cage, files, argv, {}, work / "model.log", timeout_s=300) as process:
        Channel(process, 2**25).next_line(300)
    return time.monotonic() - started_at


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", type=Path, default=EXAMPLE)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    model = args.model.resolve()

    from mlflow_validator.stages.venv.cage import Bounds, cage_for, caged, hidden_paths, watched
    from mlflow_validator.stages.venv.stage import PREDICTOR

    static = [static_stage(model) for _ in range(args.repeat)]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        python = prepared_venv(model, work)
        plan = written_plan(model, work)
        command = [python, "-I", PREDICTOR, model, plan / "plan.json", work / "home" / "answers.json"]
        home = work / "home"
        home.mkdir()
        prefix = Path(os.path.realpath(sys.executable)).parent.parent
        bounds = Bounds(memory_mb=8192, cpu_seconds=600, processes=256)
        readable = (prefix, work / "venv", model, PREDICTOR.parent, plan)
        hidden = hidden_paths(os.environ, Path.cwd(), extra=[work])
        cage = cage_for(home, readable, hidden, bounds, euid=os.geteuid())
        if cage.model_uid is not None:
            os.chown(home, cage.model_uid, cage.model_uid)
        env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home)}
        image = dependency_image(model)
        runs: dict[str, list[float]] = {"uncaged": [], "bubblewrap": [], "container": []}
        for _ in range(args.repeat):  # interleaved, so that drift in the machine's load hits all alike
            runs["uncaged"].append(timed(command, env=env, cwd=home))
            runs["bubblewrap"].append(timed_in_cage(caged(cage, command), env, home, bounds, watched))
            runs["container"].append(timed_in_container(image, model, plan, work))

    print(f"model: {model}, {args.repeat} runs each, medians")
    print(f"static stage, sum of its checks: {statistics.median(s for s, _ in static):.2f} s")
    print(f"static stage, whole command:     {statistics.median(w for _, w in static):.2f} s")
    uncaged = statistics.median(runs["uncaged"])
    print(f"model process, uncaged:          {uncaged:.2f} s")
    for backend in ("bubblewrap", "container"):
        caged_s = statistics.median(runs[backend])
        print(f"model process, {backend + ':':<18}{caged_s:.2f} s")
        print(f"  {backend} adds:{'':<{16 - len(backend)}}{caged_s - uncaged:+.2f} s ({caged_s / uncaged:.2f}x)")


if __name__ == "__main__":
    main()
