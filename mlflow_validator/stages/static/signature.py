"""A signature and an input example are logged, and the example conforms to the signature."""

from __future__ import annotations

from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.results import Outcome, failed, passed, skipped
from mlflow_validator.stages.static.context import StaticContext

HOW_TO_LOG_EXAMPLE = (
    "log the model again with input_example=<a few rows> (mlflow.<flavor>.log_model(..., input_example=X.head(3)))"
)


def check_signature(ctx: StaticContext) -> Outcome:
    signature = ctx.files.mlmodel.signature
    if not signature.inputs:
        return failed(
            "no input signature is logged, so the scoring server cannot check requests: log the model again with "
            "an input_example (MLflow infers the signature) or signature=infer_signature(X, model.predict(X))"
        )
    return passed(signature.declared)


def check_input_example(ctx: StaticContext) -> Outcome:
    try:
        example = ctx.files.serving_example
    except ModelFileError as exc:
        return failed(f"{exc}; inference cannot be verified without one: {HOW_TO_LOG_EXAMPLE}")
    return passed(example.file_name)


def check_example_matches_signature(ctx: StaticContext) -> Outcome:
    """Parse the serving example as the scoring server does, then apply MLflow's schema enforcement."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model
    from mlflow.models.utils import _enforce_params_schema, _enforce_schema
    from mlflow.pyfunc.scoring_server import _parse_json_data

    model = Model.load(str(ctx.files.directory / "MLmodel"))
    schema = model.get_input_schema()
    if schema is None:
        return skipped("no input schema to enforce")
    example = ctx.files.serving_example
    try:
        parsed = _parse_json_data(example.body, model, schema)
        _enforce_schema(parsed.data, schema)
        _enforce_params_schema(parsed.params, model.get_params_schema())
    except (MlflowException, ValueError, TypeError, KeyError) as exc:
        return failed(
            f"the logged input example does not conform to the input signature: {str(exc)[:400]}. The scoring server "
            "would reject it too: log the model again with an example and a signature that agree"
        )
    return passed(f"{example.file_name} conforms to the input signature")
