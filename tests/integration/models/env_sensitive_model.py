"""A model (logged from code) whose answer depends on where it runs: 0 on the host, 1 in a container.

It stands for the real defect of outputs that change between environments.
"""

import os

import mlflow
from mlflow.pyfunc import PythonModel


class EnvironmentSensitiveModel(PythonModel):
    def predict(self, context, model_input, params=None):
        in_container = os.path.exists("/.dockerenv")
        return [1 if in_container else 0] * len(model_input)


mlflow.models.set_model(EnvironmentSensitiveModel())
