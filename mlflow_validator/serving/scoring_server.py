"""MLflow's scoring server in the image `mlflow models build-docker` builds: nginx in front of uvicorn,
`/ping` and `/invocations`."""

from __future__ import annotations

from mlflow_validator.results import Stage
from mlflow_validator.serving.target import ServingTarget
from mlflow_validator.stages.docker.image import ServingDockerfile


def _dockerfile(generated: ServingDockerfile, dependency_image: str) -> str:
    return generated.model(dependency_image)


SCORING_SERVER = ServingTarget(
    name="mlflow",
    stage=Stage.DOCKER,
    server="MLflow's scoring server",
    files="docker",
    answers="container",
    repository="mlflow-validator/model",
    ready_path="/ping",
    promoted=True,
    capabilities=("CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE"),  # nginx's master hands its worker to a user
    dockerfile=_dockerfile,
)
