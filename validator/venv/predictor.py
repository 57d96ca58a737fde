"""Runs inside the model's own virtualenv, with the model's MLflow: not imported by the validator.

It calls the function behind `mlflow models predict`, which parses the request and serializes
the answer exactly as the scoring server in the container does.

Usage: python -I predictor.py MODEL_DIR REQUEST_JSON OUTPUT_JSON
"""

import sys

from mlflow.pyfunc.scoring_server import _predict

model_dir, request_path, output_path = sys.argv[1:4]
_predict(
    model_uri=model_dir, input_path=request_path, output_path=output_path, content_type="json"
)
