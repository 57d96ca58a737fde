"""Adds noise to x: with a `seed` in model_config the noise is the same on every call, without one it is not."""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class RandomModel(PythonModel):
    def load_context(self, context):
        self.seed = (context.model_config or {}).get("seed")

    def predict(self, context, model_input, params=None):
        rng = np.random.default_rng(self.seed)
        return (model_input["x"] + rng.normal(size=len(model_input))).tolist()


mlflow.models.set_model(RandomModel())
