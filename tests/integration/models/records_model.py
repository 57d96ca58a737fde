"""Answers a list of records ({"label", "score"} per row): MLflow's scoring server sends it as JSON, MLServer
has no codec for it."""

import mlflow
from mlflow.pyfunc import PythonModel


class RecordsModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return [{"label": "high" if x > 1 else "low", "score": float(x)} for x in model_input["x"]]


mlflow.models.set_model(RecordsModel())
