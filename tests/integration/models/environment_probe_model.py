"""Reports what it sees of its environment: MODEL_MODE (read as os.environ[...], so it fails when the
variable is not set), the CI secrets it can read, and whether it runs in MLflow's serving container.

The last part stands for the real defect of outputs that change between environments. It tells them
apart by a variable that MLflow's generated Dockerfile sets (`ENV MLFLOW_DISABLE_ENV_CREATION=True`);
/.dockerenv would not do, as CI machines are often containers themselves.
"""

import os

import mlflow
from mlflow.pyfunc import PythonModel

SECRETS = ("MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "CI_JOB_TOKEN")


class EnvironmentProbe(PythonModel):
    def predict(self, context, model_input, params=None):
        mode = os.environ["MODEL_MODE"]
        visible = ",".join(name for name in SECRETS if name in os.environ) or "none"
        where = "container" if os.environ.get("MLFLOW_DISABLE_ENV_CREATION") == "True" else "venv"
        return [f"mode={mode} secrets={visible} in={where}"] * len(model_input)


mlflow.models.set_model(EnvironmentProbe())
