"""A model with an inference param: answers x * scale (declared default 1.0)."""

import mlflow
from mlflow.pyfunc import PythonModel


class ParamsModel(PythonModel):
    def predict(self, context, model_input, params=None):
        scale = float((params or {}).get("scale", 1.0))
        return (model_input["x"] * scale).tolist()


mlflow.models.set_model(ParamsModel())
