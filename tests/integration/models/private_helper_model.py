"""A model that needs `mv-private-helper`, a package that only the tests' authenticated index serves."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class PrivateHelperModel(PythonModel):
    def predict(self, context, model_input, params=None):
        # Imported when answering: the process that logs the model does not have the package.
        from mv_private_helper import scale

        return pd.DataFrame({"score": [scale(x) for x in model_input["x"]]})


mlflow.models.set_model(PrivateHelperModel())
