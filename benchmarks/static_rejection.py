"""How long the static stage takes to reject a model with an unresolvable requirement, and how long
`mlflow models build-docker` takes to fail on the same model, in one run.

    python benchmarks/static_rejection.py [--repeat N]

The model is the example iris model with `cloudpickle==99.0.0` added to its requirements.
Prints the medians and their ratio. Needs a Docker engine and the base image (./scripts/test sets both up).
After each MLflow build it prunes dangling images (what a failed legacy build leaves), so every build starts
cold. MLflow's build gets the CA bundle through its base image (see harness.py), so it fails on the
requirement, as it would for a user, and not on TLS.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "iris-classifier"
sys.path.insert(0, str(Path(__file__).parent))


def seconds(args: list[str], expected_returncode: int | None) -> float:
    started = time.monotonic()
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    elapsed = time.monotonic() - started
    if expected_returncode is not None and done.returncode != expected_returncode:
        raise SystemExit(f"{args[:4]} exited {done.returncode}, expected {expected_returncode}")
    if expected_returncode is None and done.returncode == 0:
        raise SystemExit(f"{args[:4]} succeeded on a model it should have failed on")
    return elapsed


def main() -> None:
    from harness import base_image_trusting_the_ca, build_docker_command, no_containers_left, validator_command

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model"
        shutil.copytree(EXAMPLE, model)
        with (model / "requirements.txt").open("a") as requirements:
            requirements.write("\ncloudpickle==99.0.0\n")
        validator = validator_command(model, "--stages", "static", "--output-dir", f"{scratch}/report")
        build = build_docker_command(model, "mlflow-validator-benchmark:unresolvable")

        ours, theirs = [], []
        with base_image_trusting_the_ca(model), no_containers_left():
            for _ in range(args.repeat):
                ours.append(seconds(validator, expected_returncode=1))
                theirs.append(seconds(build, expected_returncode=None))
                subprocess.run(["docker", "image", "prune", "--force"], stdout=subprocess.DEVNULL, check=False)
    print(f"unresolvable requirement, {args.repeat} runs (median wall time, seconds)")
    print(f"  mlflow-validator --stages static rejects it     {statistics.median(ours):8.2f}   {ours}")
    print(f"  mlflow models build-docker fails on it          {statistics.median(theirs):8.2f}   {theirs}")
    print(f"  ratio: the static stage answers {statistics.median(theirs) / statistics.median(ours):.0f}x sooner")


if __name__ == "__main__":
    main()
