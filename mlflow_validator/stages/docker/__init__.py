"""Stage 3: build the image `mlflow models build-docker` would build, run it, and query it."""

LABEL = "org.mlflow-validator.managed"
