"""Logged with an output signature of integer class labels, but answers probabilities (floats)."""

import mlflow
from mlflow.pyfunc import PythonModel


class BadOutputModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return [0.5] * len(model_input)


mlflow.models.set_model(BadOutputModel())
