"""Data frame in, data frame out: a float column and a string column; `offset` (model_config) shifts the score."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class FrameModel(PythonModel):
    def load_context(self, context):
        self.offset = float((context.model_config or {}).get("offset", 0.0))

    def predict(self, context, model_input, params=None):
        score = model_input["x"] * 2 + model_input["n"] + self.offset
        return pd.DataFrame({"score": score, "label": ["high" if s > 5 else "low" for s in score]})


mlflow.models.set_model(FrameModel())
