"""Settings: declared once (`options.py`), merged from defaults < config file < env < flags
(`resolve.py`), and described for people and editors (`docs.py`)."""

from mlflow_validator.settings.options import Budgets, BuildNetwork, Options, RequestSettings, Timeouts, Tolerance
from mlflow_validator.settings.resolve import resolve_options

__all__ = ["Budgets", "BuildNetwork", "Options", "RequestSettings", "Timeouts", "Tolerance", "resolve_options"]
