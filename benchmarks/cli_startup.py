"""How soon the CLI answers `--help` and `--version`, against MLflow's own CLI answering `--help`.

    python benchmarks/cli_startup.py [--repeat N]

Each command runs N times (default 10), interleaved; prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "mlflow-validator --help": [sys.executable, "-m", "mlflow_validator", "--help"],
    "mlflow-validator --version": [sys.executable, "-m", "mlflow_validator", "--version"],
    "mlflow-validator validate --help": [sys.executable, "-m", "mlflow_validator", "validate", "--help"],
    "mlflow --help": [sys.executable, "-m", "mlflow", "--help"],
}


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            runs[name].append(timed(argv))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    mlflow = medians["mlflow --help"]
    print(f"{args.repeat} runs each, medians")
    for name, median in medians.items():
        print(f"{name:34} {median:.2f} s  ({median / mlflow:.2f}x mlflow --help)")


if __name__ == "__main__":
    main()
