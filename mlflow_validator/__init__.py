"""mlflow-validator: gate the promotion of an MLflow model on what its serving container really does."""

__version__ = "0.1.0"
PROG = "mlflow-validator"  # the console script
