"""Answers decimal.Decimal values, which the scoring server cannot turn into JSON."""

import decimal

import mlflow
from mlflow.pyfunc import PythonModel


class UnserializableModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return [decimal.Decimal("0.1")] * len(model_input)


mlflow.models.set_model(UnserializableModel())
