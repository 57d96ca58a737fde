"""How long the static stage takes to read a large joblib artifact to its end, without loading it, and to run
whole on the example model. The test command (scripts/test) runs it, so every CI run prints the figures.

    python benchmarks/pickle_reading.py [--megabytes 200] [--repeat 5]

A scikit-learn-style payload of that size (float64 arrays in a dict, as joblib.dump writes them, the array
data inline) is dumped once; `analyze_pickle` reads it --repeat times. For comparison, joblib.load of the same
file (which loads it: what the validator never does) is timed too. Then `mlflow-validator validate
examples/iris-classifier --stages static` runs --repeat times: the sum of its checks' times (what the goal of
at most 5 s is about), and the command's wall time, Python's and MLflow's start-up included. Prints medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

from mlflow_validator.stages.static.pickles import analyze_pickle

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"


def static_stage(scratch: str) -> tuple[float, float]:
    """(the sum of the static checks' times, the command's wall time)."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "mlflow_validator", "validate", str(EXAMPLE), "--stages", "static"]
    subprocess.run([*argv, "--output-dir", scratch, "--quiet"], stdout=subprocess.DEVNULL, check=True)
    wall = time.monotonic() - started
    checks = json.loads((Path(scratch) / "report.json").read_text())["checks"]
    return sum(check["duration_s"] for check in checks), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "weights.joblib"
        parts = 8
        rows = args.megabytes * 2**20 // 8 // parts // 64
        joblib.dump({f"layer{i}": np.random.default_rng(i).random((rows, 64)) for i in range(parts)}, path)
        reads, loads = [], []
        for _ in range(args.repeat):
            started = time.monotonic()
            (found,) = analyze_pickle(path, path.parent, "3.11")
            reads.append(time.monotonic() - started)
            started = time.monotonic()
            joblib.load(path)
            loads.append(time.monotonic() - started)
        size = path.stat().st_size / 2**20
        stage_runs = [static_stage(scratch) for _ in range(args.repeat)]
    print(f"{size:.0f} MiB joblib file, {args.repeat} runs, medians")
    print(f"read to its end, nothing loaded: {statistics.median(reads):.2f} s (verdict: {found.verdict})")
    print(f"joblib.load, for comparison:     {statistics.median(loads):.2f} s")
    print(f"static stage on the example model, {args.repeat} runs, medians")
    print(f"its checks:                      {statistics.median(run[0] for run in stage_runs):.2f} s")
    print(f"the command, start-up included:  {statistics.median(run[1] for run in stage_runs):.2f} s")


if __name__ == "__main__":
    main()
