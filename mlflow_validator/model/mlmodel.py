"""MLmodel, parsed once into a typed view. Nothing downstream indexes the raw YAML."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PYFUNC_FLAVOR = "python_function"


class ModelFileError(Exception):
    """A model file is missing or malformed: the model's fault, so the check that reads it fails."""


Spec = Mapping[str, Any]  # one entry of a signature, as MLflow writes it ({"name", "type", "required", ...})


@dataclass(frozen=True)
class Signature:
    """The parts of MLmodel's signature that shape requests and answers (MLflow's JSON specs, parsed)."""

    inputs: tuple[Spec, ...] = ()
    outputs: tuple[Spec, ...] = ()
    params: tuple[Spec, ...] = ()

    @property
    def declared(self) -> str:
        """Which parts are logged, e.g. "inputs, outputs"."""
        return ", ".join(name for name in ("inputs", "outputs", "params") if getattr(self, name))


@dataclass(frozen=True)
class InputExampleInfo:
    """`saved_input_example_info`: where the example is and what kind it is."""

    serving_input_path: str  # empty for models logged before MLflow wrote serving examples
    artifact_path: str
    type: str


@dataclass(frozen=True)
class PyfuncFlavor:
    python_version: str
    virtualenv: str  # python_env.yaml, relative to the model directory; empty when not named
    conda: str  # conda.yaml, likewise
    code: str  # the code_paths directory, or empty
    model_code_path: str  # a models-from-code file, by the path on the machine that logged it
    cloudpickle_version: str  # what pickled a PythonModel, when MLflow recorded it
    streamable: bool  # the model offers predict_stream


@dataclass(frozen=True)
class MLmodel:
    flavors: Mapping[str, Mapping[str, Any]]  # every flavor's configuration, as logged
    mlflow_version: str
    signature: Signature
    input_example: InputExampleInfo | None
    pyfunc_flavor: PyfuncFlavor | None
    task: str  # metadata.task: the API a GenAI model speaks (agent/v1/responses, llm/v1/chat, …); empty if none

    @property
    def python_function(self) -> PyfuncFlavor:
        if self.pyfunc_flavor is None:
            raise ModelFileError(f"MLmodel has no '{PYFUNC_FLAVOR}' flavor, so no MLflow scoring server can serve it")
        return self.pyfunc_flavor


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _specs(signature: Mapping[str, Any], key: str) -> tuple[Spec, ...]:
    text = signature.get(key)
    try:
        parsed = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        raise ModelFileError(f"MLmodel's signature.{key} is not valid JSON") from None
    return tuple(spec for spec in parsed if isinstance(spec, dict)) if isinstance(parsed, list) else ()


def _signature(raw: Any) -> Signature:
    if not isinstance(raw, Mapping):
        return Signature()
    return Signature(_specs(raw, "inputs"), _specs(raw, "outputs"), _specs(raw, "params"))


def _input_example(raw: Any) -> InputExampleInfo | None:
    if not isinstance(raw, Mapping):
        return None
    return InputExampleInfo(
        _text(raw.get("serving_input_path")), _text(raw.get("artifact_path")), _text(raw.get("type"))
    )


def _pyfunc(flavors: Mapping[str, Any]) -> PyfuncFlavor | None:
    conf = flavors.get(PYFUNC_FLAVOR)
    if not isinstance(conf, Mapping):
        return None
    env = conf.get("env")
    env = env if isinstance(env, Mapping) else {}
    return PyfuncFlavor(
        python_version=_text(conf.get("python_version")),
        virtualenv=_text(env.get("virtualenv")),
        conda=_text(env.get("conda")),
        code=_text(conf.get("code")),
        model_code_path=_text(conf.get("model_code_path")),
        cloudpickle_version=_text(conf.get("cloudpickle_version")),
        streamable=conf.get("streamable") is True,
    )


def parse_mlmodel(path: Path) -> MLmodel:
    try:
        meta = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelFileError(f"cannot read {path.name}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path.name} is not valid YAML ({first_line})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("flavors"), dict):
        raise ModelFileError(f"{path.name} has no 'flavors' mapping")
    flavors = {str(name): conf if isinstance(conf, dict) else {} for name, conf in meta["flavors"].items()}
    return MLmodel(
        flavors=flavors,
        mlflow_version=_text(meta.get("mlflow_version")),
        signature=_signature(meta.get("signature")),
        input_example=_input_example(meta.get("saved_input_example_info")),
        pyfunc_flavor=_pyfunc(meta["flavors"]),
        task=_text(meta["metadata"].get("task")) if isinstance(meta.get("metadata"), dict) else "",
    )
