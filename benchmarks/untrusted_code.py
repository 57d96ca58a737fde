"""What treating the model as untrusted code costs, in one run.

    python benchmarks/untrusted_code.py [MODEL_DIR] [--repeat N]

1. The static stage, pickle analysis included: the sum of its checks' times in the JUnit report, and
   the wall time of the whole command (Python and MLflow start-up, fetch).
2. The cage: the venv stage's model process (load the model, answer every sample request twice,
   20 latency samples: what `mlflow models predict` does, uncaged) run in the same virtualenv with
   and without the cage (bubblewrap, setpriv and prlimit as the venv stage builds them for this user,
   the watch over its processes included). Prints medians and the difference.
"""

from __future__ import annotations

import argparse
import json
import os
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


def predictor_command(model: Path, python: Path, work: Path) -> list[str | Path]:
    from mlflow_validator.expectations.requests import plan_requests
    from mlflow_validator.model.files import ModelFiles
    from mlflow_validator.settings import RequestSettings
    from mlflow_validator.stages.venv.stage import PREDICTOR

    entries = []
    for request in plan_requests(ModelFiles(model, {}), RequestSettings()):
        body = work / f"{request.name}.body"
        body.write_text(request.body)
        entries.append({"name": request.name, "body_file": str(body), "content_type": request.content_type})
    plan = work / "plan.json"
    plan.write_text(json.dumps({"requests": entries, "latency_samples": 20}))
    return [python, "-I", PREDICTOR, model, plan, work / "home" / "answers.json"]


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
        command = predictor_command(model, python, work)
        home = work / "home"
        home.mkdir()
        prefix = Path(os.path.realpath(sys.executable)).parent.parent
        bounds = Bounds(memory_mb=8192, cpu_seconds=600, processes=256)
        readable = (prefix, work / "venv", model, PREDICTOR.parent, *work.glob("*.body"), work / "plan.json")
        hidden = hidden_paths(os.environ, Path.cwd(), extra=[work])
        cage = cage_for(home, readable, hidden, bounds, euid=os.geteuid())
        if cage.model_uid is not None:
            os.chown(home, cage.model_uid, cage.model_uid)
        env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home)}
        runs: dict[str, list[float]] = {"uncaged": [], "caged": []}
        for _ in range(args.repeat):  # interleaved, so that drift in the machine's load hits both alike
            runs["uncaged"].append(timed(command, env=env, cwd=home))
            runs["caged"].append(timed_in_cage(caged(cage, command), env, home, bounds, watched))

    print(f"model: {model}, {args.repeat} runs each, medians")
    print(f"static stage, sum of its checks: {statistics.median(s for s, _ in static):.2f} s")
    print(f"static stage, whole command:     {statistics.median(w for _, w in static):.2f} s")
    uncaged, caged_s = statistics.median(runs["uncaged"]), statistics.median(runs["caged"])
    print(f"model process, uncaged:          {uncaged:.2f} s")
    print(f"model process, caged:            {caged_s:.2f} s")
    print(f"the cage adds:                   {caged_s - uncaged:+.2f} s ({caged_s / uncaged:.2f}x)")


if __name__ == "__main__":
    main()
