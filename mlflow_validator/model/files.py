"""The files MLflow writes next to a model, each parsed at most once, on first use.

A broken file raises ModelFileError in every check that reads it (the model's fault: the check
fails), and is not parsed again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mlflow_validator.model.mlmodel import MLmodel, ModelFileError, parse_mlmodel
from mlflow_validator.model.requirements import RequirementLine, read_requirements

T = TypeVar("T")

PYTHON_VERSION = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")
# Older MLflow versions wrote no serving_input_path, only input_example.json in pandas or tensor form.
DEFAULT_SERVING_EXAMPLE = "serving_input_example.json"
SERVING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class PythonEnv:
    python: str
    build_dependencies: tuple[str, ...]
    requirements_file: Path


@dataclass(frozen=True)
class ServingExample:
    """The logged input example as a request body for /invocations."""

    file_name: str
    body: str


def _yaml_file(path: Path, relative: str) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelFileError(f"cannot read {relative}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{relative} is not valid YAML ({str(exc).splitlines()[0]})") from None


def _as_serving_request(example: Any, example_type: str) -> Any:
    """An older input_example.json (no serving file next to it) in the scoring server's format."""
    if isinstance(example, dict) and any(key in example for key in SERVING_KEYS):
        return example
    if example_type == "dataframe":
        return {"dataframe_split": example}
    return {"inputs": example}


class ModelFiles:
    """A model directory and its store's listing, with typed views of the files the stages read."""

    def __init__(self, directory: Path, listing: Mapping[str, int | None]) -> None:
        self.directory = directory
        self.listing = listing  # every file of the model, relative path -> size in the store
        self._parsed: dict[str, Any] = {}

    def _once(self, name: str, read: Callable[[], T]) -> T:
        if name not in self._parsed:
            try:
                self._parsed[name] = read()
            except ModelFileError as exc:
                self._parsed[name] = exc
        value = self._parsed[name]
        if isinstance(value, ModelFileError):
            raise ModelFileError(str(value))
        return value  # type: ignore[no-any-return]

    def listed(self, relative: str) -> bool:
        """A file, or a directory with files under it, that the model's store lists."""
        relative = relative.strip("/")
        return relative in self.listing or any(path.startswith(relative + "/") for path in self.listing)

    @property
    def mlmodel(self) -> MLmodel:
        return self._once("MLmodel", lambda: parse_mlmodel(self.directory / "MLmodel"))

    @property
    def python_env(self) -> PythonEnv:
        return self._once("python_env", self._read_python_env)

    @property
    def conda(self) -> Mapping[str, Any]:
        """conda.yaml, or empty when the model has none."""
        return self._once("conda", self._read_conda)

    @property
    def requirements(self) -> list[RequirementLine]:
        return self._once("requirements", lambda: read_requirements(self.python_env.requirements_file))

    @property
    def requirement_names(self) -> set[str]:
        """The distributions the model requires itself (canonical names), not what they bring."""
        return {line.name for line in self.requirements if line.name}

    @property
    def serving_example(self) -> ServingExample:
        return self._once("serving_example", self._read_serving_example)

    def _read_python_env(self) -> PythonEnv:
        relative = self.mlmodel.python_function.virtualenv
        if not relative:
            raise ModelFileError("MLmodel names no python_env.yaml (flavors.python_function.env.virtualenv)")
        data = _yaml_file(self.directory / relative, relative) or {}
        python = str(data.get("python", "")) if isinstance(data, dict) else ""
        if not python:
            raise ModelFileError(f"{relative} does not say which Python version the model needs")
        if not PYTHON_VERSION.fullmatch(python):  # it reaches uv's and docker's command lines
            raise ModelFileError(f"{relative} names Python {python!r}, which is no version like 3.11.7")
        requirements = [dep for dep in data.get("dependencies") or [] if str(dep).startswith("-r ")]
        requirements_file = self.directory / (requirements[0][3:].strip() if requirements else "requirements.txt")
        if not requirements_file.resolve().is_relative_to(self.directory.resolve()):
            raise ModelFileError(f"{relative} names requirements outside the model ({requirements_file.name})")
        if not requirements_file.is_file():
            raise ModelFileError(f"{requirements_file.name} is missing, so the model's dependencies are unknown")
        return PythonEnv(python, tuple(str(dep) for dep in data.get("build_dependencies") or []), requirements_file)

    def _read_conda(self) -> Mapping[str, Any]:
        relative = self.mlmodel.python_function.conda
        if not relative or not (self.directory / relative).is_file():
            return {}
        data = _yaml_file(self.directory / relative, relative)
        if data is not None and not isinstance(data, dict):
            raise ModelFileError(f"{relative} is not a conda environment (a YAML mapping)")
        return data or {}

    def _read_serving_example(self) -> ServingExample:
        info = self.mlmodel.input_example
        if info is None:
            raise ModelFileError("no input example is logged (MLmodel has no saved_input_example_info)")
        name = info.serving_input_path
        if not name and (self.directory / DEFAULT_SERVING_EXAMPLE).is_file():
            name = DEFAULT_SERVING_EXAMPLE
        if name:
            if not (self.directory / name).is_file():
                raise ModelFileError(f"the serving input example {name} is missing")
            return ServingExample(name, (self.directory / name).read_text())
        name = info.artifact_path or "input_example.json"
        try:
            example = json.loads((self.directory / name).read_text())
        except OSError:
            raise ModelFileError(f"the input example {name} is missing") from None
        except ValueError as exc:
            raise ModelFileError(f"the input example {name} is not valid JSON ({exc})") from None
        return ServingExample(name, json.dumps(_as_serving_request(example, info.type)))
