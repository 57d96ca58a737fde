"""Stage 3: build the image `mlflow models build-docker` would build, run it, and query it."""

LABEL = "org.mlflow-validator.managed"
TARGET_LABEL = "org.mlflow-validator.target"  # which serving target built or runs it
