"""A model (logged from code) whose answer depends on where it runs: 0 in a virtualenv, 1 in the container.

It stands for the real defect of outputs that change between environments. It tells them apart by a
variable that MLflow's generated Dockerfile sets (`ENV MLFLOW_DISABLE_ENV_CREATION=True`); /.dockerenv
would not do, as CI machines are often containers themselves.
"""

import os

import mlflow
from mlflow.pyfunc import PythonModel


class EnvironmentSensitiveModel(PythonModel):
    def predict(self, context, model_input, params=None):
        in_container = os.environ.get("MLFLOW_DISABLE_ENV_CREATION") == "True"
        return [1 if in_container else 0] * len(model_input)


mlflow.models.set_model(EnvironmentSensitiveModel())
