"""What serves the model in a container, and how it is asked: a module per serving target, registered here."""

from __future__ import annotations

from mlflow_validator.serving.mlserver import MLSERVER
from mlflow_validator.serving.scoring_server import SCORING_SERVER
from mlflow_validator.serving.target import ServingTarget

TARGETS: dict[str, ServingTarget] = {target.name: target for target in (SCORING_SERVER, MLSERVER)}
