"""Stage 1: check the model's files without installing anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from validator.model_files import (
    ModelFileError,
    pyfunc_conf,
    read_mlmodel,
    read_python_env,
    serving_example_path,
)
from validator.results import Outcome, failed, passed
from validator.steps import Step

# Flavor keys whose values are paths relative to the model directory.
PATH_KEYS = frozenset({"data", "code", "model_path", "pickled_model", "python_model", "model_code_path"})

HOW_TO_LOG_EXAMPLE = (
    "log the model again with input_example=<a few rows> (mlflow.<flavor>.log_model(..., input_example=X.head(3)))"
)


class StaticChecks:
    """The static checks of one model; each method is a step."""

    def __init__(self, model_dir: Path, model_uri: str) -> None:
        self.model_dir = model_dir
        self.model_uri = model_uri
        self.meta: dict[str, Any] = {}

    def steps(self) -> list[Step]:
        after_mlmodel = ("mlmodel",)
        return [
            Step("mlmodel", self.mlmodel_parses),
            Step("pyfunc-flavor", self.has_pyfunc_flavor, requires=after_mlmodel),
            Step("referenced-files", self.referenced_files_exist, requires=after_mlmodel),
            Step("environment-files", self.environment_files_exist, requires=("mlmodel", "pyfunc-flavor")),
            Step("input-example", self.input_example_logged, requires=after_mlmodel),
        ]

    def mlmodel_parses(self) -> Outcome:
        try:
            self.meta = read_mlmodel(self.model_dir)
        except ModelFileError as exc:
            return failed(f"{exc}; the model directory is damaged: log the model again")
        return passed(f"flavors: {', '.join(self.meta['flavors'])}")

    def has_pyfunc_flavor(self) -> Outcome:
        try:
            pyfunc_conf(self.meta)
        except ModelFileError as exc:
            return failed(f"{exc}; log it with an MLflow flavor or mlflow.pyfunc.log_model")
        return passed()

    def referenced_files_exist(self) -> Outcome:
        missing = sorted(
            f"{flavor}.{key} -> {value}"
            for flavor, conf in self.meta["flavors"].items()
            if isinstance(conf, dict)
            for key, value in conf.items()
            if key in PATH_KEYS and isinstance(value, str) and not (self.model_dir / value).exists()
        )
        if missing:
            return failed(
                f"MLmodel references files that are not in the model: {'; '.join(missing)}; "
                "the artifacts are incomplete: log the model again",
            )
        return passed()

    def environment_files_exist(self) -> Outcome:
        try:
            env = read_python_env(self.model_dir, self.meta)
        except ModelFileError as exc:
            return failed(
                f"{exc}; log the model with a recent MLflow, which writes python_env.yaml and requirements.txt"
            )
        return passed(f"Python {env.python}, requirements in {env.requirements_file.name}")

    def input_example_logged(self) -> Outcome:
        try:
            path = serving_example_path(self.model_dir, self.meta)
        except ModelFileError as exc:
            return failed(f"{exc}; inference cannot be verified without one: {HOW_TO_LOG_EXAMPLE}")
        return passed(path.name)
