"""Dict input ({"text": [...], "weight": [...]}): answers len(text) * weight per row."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class DictModel(PythonModel):
    def predict(self, context, model_input, params=None):
        frame = pd.DataFrame(model_input)
        return (frame["text"].str.len() * frame["weight"]).tolist()


mlflow.models.set_model(DictModel())
