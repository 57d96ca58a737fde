"""Read the files MLflow writes next to a model (MLmodel, python_env.yaml, the input example)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PYFUNC_FLAVOR = "python_function"
# Older MLflow versions wrote no serving_input_path, only input_example.json in pandas or tensor form.
DEFAULT_SERVING_EXAMPLE = "serving_input_example.json"


class ModelFileError(Exception):
    """A model file is missing or malformed; the static stage turns this into a failed check."""


@dataclass(frozen=True)
class PythonEnv:
    python: str
    build_dependencies: tuple[str, ...]
    requirements_file: Path


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    try:
        meta = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelFileError(f"cannot read {path.name}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise ModelFileError(f"{path.name} has no 'flavors' mapping")
    return meta


def pyfunc_conf(meta: dict[str, Any]) -> dict[str, Any]:
    conf = meta["flavors"].get(PYFUNC_FLAVOR)
    if not isinstance(conf, dict):
        raise ModelFileError(f"MLmodel has no '{PYFUNC_FLAVOR}' flavor, so no MLflow scoring server can serve it")
    return conf


def read_python_env(model_dir: Path, meta: dict[str, Any]) -> PythonEnv:
    env_conf = pyfunc_conf(meta).get("env")
    relative = env_conf.get("virtualenv") if isinstance(env_conf, dict) else None
    if not relative:
        raise ModelFileError("MLmodel names no python_env.yaml (flavors.python_function.env.virtualenv)")
    path = model_dir / relative
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFileError(f"cannot read {relative}: {exc}") from None
    python = str(data.get("python", "")) if isinstance(data, dict) else ""
    if not python:
        raise ModelFileError(f"{relative} does not say which Python version the model needs")
    requirements = [dep for dep in data.get("dependencies") or [] if str(dep).startswith("-r ")]
    requirements_file = model_dir / (requirements[0][3:].strip() if requirements else "requirements.txt")
    if not requirements_file.is_file():
        raise ModelFileError(f"{requirements_file.name} is missing, so the model's dependencies are unknown")
    return PythonEnv(python, tuple(str(dep) for dep in data.get("build_dependencies") or []), requirements_file)


@dataclass(frozen=True)
class ServingExample:
    """The logged input example as a request body for /invocations."""

    file_name: str
    body: str


SERVING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _as_serving_request(example: Any, example_type: str) -> dict[str, Any]:
    """An older input_example.json (no serving file next to it) in the scoring server's format."""
    if isinstance(example, dict) and any(key in example for key in SERVING_KEYS):
        return example
    if example_type == "dataframe":
        return {"dataframe_split": example}
    return {"inputs": example}


def serving_example(model_dir: Path, meta: dict[str, Any]) -> ServingExample:
    info = meta.get("saved_input_example_info")
    if not isinstance(info, dict):
        raise ModelFileError("no input example is logged (MLmodel has no saved_input_example_info)")
    name = str(info.get("serving_input_path") or "")
    if not name and (model_dir / DEFAULT_SERVING_EXAMPLE).is_file():
        name = DEFAULT_SERVING_EXAMPLE
    if name:
        if not (model_dir / name).is_file():
            raise ModelFileError(f"the serving input example {name} is missing")
        return ServingExample(name, (model_dir / name).read_text())
    name = str(info.get("artifact_path") or "input_example.json")
    try:
        example = json.loads((model_dir / name).read_text())
    except OSError:
        raise ModelFileError(f"the input example {name} is missing") from None
    except ValueError as exc:
        raise ModelFileError(f"the input example {name} is not valid JSON ({exc})") from None
    return ServingExample(name, json.dumps(_as_serving_request(example, str(info.get("type", "")))))
