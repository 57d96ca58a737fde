"""Needs something outside itself to answer: a file by its absolute path on the machine it was
logged on, or a service over HTTP (model_config: {"file": path} or {"url": url})."""

import mlflow
import requests
from mlflow.pyfunc import PythonModel


class Reaching(PythonModel):
    def load_context(self, context):
        self.config = context.model_config

    def predict(self, context, model_input, params=None):
        if "file" in self.config:
            with open(self.config["file"]) as handle:
                offset = len(handle.read())
        else:
            offset = len(requests.get(self.config["url"], timeout=5).text)
        return model_input.assign(offset=offset)


mlflow.models.set_model(Reaching())
