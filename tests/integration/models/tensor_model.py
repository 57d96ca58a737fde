"""Tensor input (a float32 array of shape (-1, 4)): answers each row's sum."""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class TensorModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=np.float32).sum(axis=1)


mlflow.models.set_model(TensorModel())
