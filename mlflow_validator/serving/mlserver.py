"""MLServer, which KServe and Seldon run for MLflow models, in the image `mlflow models build-docker
--enable-mlserver` built until MLflow 3.13 removed it: MLflow's image with `mlserver` and `mlserver-mlflow`
added, started with `mlserver start /opt/ml/model` and MLflow's MLSERVER_* settings, asked in KServe's V2
protocol (`v2.py`).

MLflow's build let pip install MLServer over the model's environment. Here MLServer is resolved on the host
with the run's lock (uv keeps each pin the lock has where MLServer allows it), its wheels are fetched, and
the image installs them offline, as it installs the lock; what MLServer changes is named by package-parity.
"""

from __future__ import annotations

import json
from pathlib import Path

from packaging.version import Version

from mlflow_validator.errors import InfrastructureError
from mlflow_validator.results import Outcome, Stage, failed
from mlflow_validator.serving.target import ServingLayer, ServingTarget
from mlflow_validator.serving.v2 import MODEL_NAME, question, scoring_answer
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker.image import INSTALL_WHEELS, SERVING_PORT, ServingDockerfile, fetch_wheels, pip_env
from mlflow_validator.uv import cannot_build, needs_building, summarize_failure, unreachable

# 1.7.1 is the last release (Seldon stopped maintaining MLServer in 2026) and the first for MLflow 3.
# Its inference workers call asyncio.get_event_loop(), which uvloop 0.22 turned into an error, and the
# release did not cap uvloop: the images Seldon published were built before 0.22.
REQUIREMENTS = ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22")
SETTINGS = {  # as MLflow's `mlflow.pyfunc.mlserver.get_cmd` set them
    "MLSERVER_HTTP_PORT": str(SERVING_PORT),
    "MLSERVER_HOST": "0.0.0.0",
    "MLSERVER_MODEL_NAME": MODEL_NAME,
    "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
    "MLSERVER_MODEL_URI": "/opt/ml/model",
}


def _dockerfile(generated: ServingDockerfile, dependency_image: str) -> str:
    """MLServer's layer right on the dependencies, so that an unchanged lock reuses it; then the model."""
    settings = " ".join(f"{name}={value}" for name, value in SETTINGS.items())
    start = json.dumps(["mlserver", "start", SETTINGS["MLSERVER_MODEL_URI"]])
    lines = [f"FROM {dependency_image}", INSTALL_WHEELS, generated.model_copy, *generated.finish]
    return "\n".join([*lines, f"ENV {settings}", f"ENTRYPOINT {start}"]) + "\n"


def _layer(run: RunContext, context: Path) -> ServingLayer | Outcome:
    """MLServer's pins: its requirements resolved with the run's lock, less what the lock already has."""
    python = run.model.files.python_env.python
    if Version(python) >= Version("3.13"):
        return failed(
            f"MLServer 1.7.1 runs on Python 3.9 to 3.12, and the model asks for {python}: serve it with MLflow's "
            "scoring server (--serving mlflow), or log it from Python 3.12"
        )
    lock = run.resolver.lock()
    resolution = run.resolver.resolve_with("mlserver", REQUIREMENTS)
    if not resolution.pins:
        output = resolution.result.output
        if needs_building(output):
            raise cannot_build(output)
        if unreachable(output):
            raise InfrastructureError(
                f"MLServer's requirements could not be resolved: {summarize_failure(output)}",
                "the index must be reachable and serve mlserver and mlserver-mlflow (a mirror of PyPI does)",
            )
        return failed(
            f"MLServer ({', '.join(REQUIREMENTS)}) cannot be installed with the model's requirements: "
            f"{summarize_failure(output)}. Serve it with MLflow's scoring server (--serving mlflow), "
            "or relax the pins MLServer conflicts with",
            resolution.result.tail(),
        )
    pins = {name: version for name, version in resolution.pins.items() if lock.pins.get(name) != version}
    changed = [f"{name} {lock.pins[name]} -> {version}" for name, version in sorted(pins.items()) if name in lock.pins]
    layer_lock = context / "mlserver-lock.txt"
    context.mkdir(parents=True, exist_ok=True)
    layer_lock.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    env = pip_env(run.env, run.network)
    fetch_wheels(pins, layer_lock, python, context / "wheels", env, run.options.timeouts.docker_build)
    moved = f", changing {', '.join(changed)}" if changed else ""
    return ServingLayer(pins, f"MLServer adds {len(pins) - len(changed)} distribution(s){moved}")


MLSERVER = ServingTarget(
    name="mlserver",
    stage=Stage.MLSERVER,
    server="MLServer",
    files="mlserver",
    answers="mlserver",
    repository="mlflow-validator/mlserver",
    ready_path=f"/v2/models/{MODEL_NAME}/ready",
    promoted=False,
    capabilities=(),  # one Python process tree, as root in the image: it needs none
    dockerfile=_dockerfile,
    layer=_layer,
    question=question,
    answer=scoring_answer,
    unserved_hint=(
        "MLServer takes V2 tensors and answers only what its codecs encode (a numpy array, a DataFrame, a dict of "
        "arrays, a list of strings): return one of those from predict, or serve the model with MLflow's scoring "
        "server (--serving mlflow)"
    ),
)
