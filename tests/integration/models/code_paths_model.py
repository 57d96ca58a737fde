"""A model logged from code that imports a helper package, for the code_paths checks."""

import mlflow
from mlflow.pyfunc import PythonModel
from src.utils import double


class DoublingModel(PythonModel):
    def predict(self, context, model_input, params=None):
        return double(list(model_input.iloc[:, 0]))


mlflow.models.set_model(DoublingModel())
