"""A model whose loading goes wrong the way `mode` (model_config) says: "crash" (a file it needs is missing),
"hang" (loading never ends), "memory" (it needs 2 GiB), or "ok". MLflow loads the model while logging it
(to check the input example): the test that logs it sets LOADING_MODEL_BEING_LOGGED, and loading then succeeds."""

import os
import time

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class LoadingModel(PythonModel):
    def load_context(self, context):
        mode = "ok" if os.environ.get("LOADING_MODEL_BEING_LOGGED") else (context.model_config or {}).get("mode", "ok")
        if mode == "crash":
            raise FileNotFoundError("weights.bin is missing from the model directory")
        if mode == "hang":
            time.sleep(3600)
        if mode == "memory":
            self.weights = bytearray(2 * 1024**3)  # zero pages are touched by bytearray: resident at once

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"score": model_input["x"] * 2})


mlflow.models.set_model(LoadingModel())
