"""Stage 1: check the model's files in seconds, before anything is installed."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mlflow_validator.expectations.answers import StageAnswers
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.results import Outcome, Stage, failed, passed
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.static.code_imports import check_code_imports
from mlflow_validator.stages.static.context import StaticContext, read_pickles_in_background
from mlflow_validator.stages.static.environment import check_agreement, check_environment_files, check_pinned
from mlflow_validator.stages.static.integrity import check_integrity
from mlflow_validator.stages.static.pickled import (
    check_absolute_paths,
    check_environment_variables,
    check_pickle_compatibility,
    check_unsafe_pickle,
)
from mlflow_validator.stages.static.resolution import ResolutionChecks
from mlflow_validator.stages.static.secrets import check_secrets
from mlflow_validator.stages.static.signature import (
    check_example_matches_signature,
    check_input_example,
    check_signature,
)
from mlflow_validator.steps import Step, steps_for


class StaticStage:
    def __init__(self, run: RunContext) -> None:
        options = run.options
        files = run.model.files
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickles")
        self.ctx = StaticContext(
            files,
            options.model_uri,
            run.resolver,
            read_pickles_in_background(files, self.background, options.pickles.trusted),
            declared_env=(*options.env.passed, *options.env.values),
            platforms=options.platforms,
        )
        self.policy = options.policy

    def steps(self) -> list[Step]:
        ctx = self.ctx
        resolution = ResolutionChecks(ctx.resolver)

        def bind(check: Callable[[StaticContext], Outcome]) -> Callable[[], Outcome]:
            return lambda: check(ctx)

        return steps_for(
            Stage.STATIC,
            {
                "mlmodel": self.mlmodel_parses,
                "pyfunc-flavor": self.has_pyfunc_flavor,
                "integrity": bind(check_integrity),
                "unsafe-pickle": bind(check_unsafe_pickle),
                "environment-files": bind(check_environment_files),
                "environment-agreement": bind(check_agreement),
                "resolvable": bind(resolution.check_resolvable),
                "platforms": bind(resolution.check_platforms),
                "runtime-constraints": bind(resolution.check_runtime_constraints),
                "pinned": bind(check_pinned),
                "uv-lock": bind(resolution.check_uv_lock),
                "code-imports": bind(check_code_imports),
                "pickle-compatibility": bind(check_pickle_compatibility),
                "environment-variables": bind(check_environment_variables),
                "absolute-paths": bind(check_absolute_paths),
                "secrets": bind(check_secrets),
                "signature": bind(check_signature),
                "input-example": bind(check_input_example),
                "example-matches-signature": bind(check_example_matches_signature),
            },
            self.policy,
        )

    def answered(self) -> StageAnswers | None:
        return None

    def close(self) -> None:
        self.background.shutdown(wait=False, cancel_futures=True)

    def mlmodel_parses(self) -> Outcome:
        try:
            mlmodel = self.ctx.files.mlmodel
        except ModelFileError as exc:
            return failed(f"{exc}; the model directory is damaged: log the model again")
        return passed(f"flavors: {', '.join(mlmodel.flavors)}")

    def has_pyfunc_flavor(self) -> Outcome:
        try:
            _ = self.ctx.files.mlmodel.python_function
        except ModelFileError as exc:
            return failed(f"{exc}; log it with an MLflow flavor or mlflow.pyfunc.log_model")
        return passed()
