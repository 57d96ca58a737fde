"""Stage 0: resolve a model URI against the registry and download the model's files."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from tenacity import retry, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from validator.errors import ModelNotFoundError, RegistryUnreachableError, UsageError
from validator.options import Options
from validator.results import ModelIdentity

T = TypeVar("T")

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$")

URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a local model directory"


@dataclass(frozen=True)
class ModelReference:
    """A parsed model URI, before any network call."""

    uri: str
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    local_path: Path | None = None


@dataclass(frozen=True)
class FetchedModel:
    directory: Path
    identity: ModelIdentity


def parse_model_uri(uri: str) -> ModelReference:
    """Pure parse of the supported URI forms; anything else is a usage error."""
    if match := _MODELS_URI.match(uri):
        return ModelReference(uri, name=match["name"], version=match["version"] or "", alias=match["alias"] or "")
    if match := _RUNS_URI.match(uri):
        return ModelReference(uri, run_id=match["run_id"])
    if "://" not in uri and ":/" not in uri:
        return ModelReference(uri, name=Path(uri).name, local_path=Path(uri).expanduser())
    raise UsageError(f"unsupported model URI '{uri}'", f"use {URI_FORMS}")


@contextmanager
def _mlflow_http_without_own_retries(timeout_s: float) -> Iterator[None]:
    """MLflow's client retries for minutes by default; we retry with a bound of our own instead."""
    overrides = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _classify(exc: Exception, ref: ModelReference, tracking_uri: str) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in (
        "RESOURCE_DOES_NOT_EXIST",
        "NOT_FOUND",
        "INVALID_PARAMETER_VALUE",
    ):
        return ModelNotFoundError(
            f"{ref.uri} does not exist in the registry at {tracking_uri}",
            "check the name, version or alias (the MLflow UI lists them under Models)",
        )
    text = str(exc)
    if any(marker in text for marker in ("Connection refused", "Max retries exceeded", "timed out", "NameResolution")):
        return RegistryUnreachableError(
            f"the MLflow tracking server at {tracking_uri} did not answer",
            "check --tracking-uri / MLFLOW_TRACKING_URI and that the server is running",
        )
    return exc


def _call_registry(call: Callable[[], T], ref: ModelReference, tracking_uri: str, timeout_s: float) -> T:
    @retry(
        retry=retry_if_exception_type(RegistryUnreachableError),
        stop=stop_after_attempt(4) | stop_after_delay(timeout_s),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    def attempt() -> T:
        try:
            return call()
        except Exception as exc:
            raise _classify(exc, ref, tracking_uri) from exc

    with _mlflow_http_without_own_retries(timeout_s):
        return attempt()


def _read_mlflow_version(model_dir: Path) -> str:
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""  # the static stage reports it
    return str(meta.get("mlflow_version", "")) if isinstance(meta, dict) else ""


def _fetch_local(ref: ModelReference, dest: Path) -> FetchedModel:
    assert ref.local_path is not None
    if not (ref.local_path / "MLmodel").is_file():
        raise ModelNotFoundError(
            f"{ref.local_path} is not an MLflow model directory (no MLmodel file)",
            f"pass {URI_FORMS}",
        )
    shutil.copytree(ref.local_path, dest)
    identity = ModelIdentity(
        uri=ref.uri, name=ref.name, source=str(ref.local_path.resolve()), mlflow_version=_read_mlflow_version(dest)
    )
    return FetchedModel(dest, identity)


def fetch_model(options: Options, dest: Path) -> FetchedModel:
    """Resolve `options.model_uri` and download the model into `dest` (which must not exist)."""
    ref = parse_model_uri(options.model_uri)
    if ref.local_path is not None:
        return _fetch_local(ref, dest)

    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.tracking import get_tracking_uri

    tracking_uri = options.tracking_uri or get_tracking_uri()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=options.registry_uri)

    def registry(call: Callable[[], T]) -> T:
        return _call_registry(call, ref, tracking_uri, options.timeouts.registry)

    if ref.run_id:
        run = registry(lambda: client.get_run(ref.run_id))
        identity = ModelIdentity(uri=ref.uri, name=run.info.run_name or ref.run_id, run_id=ref.run_id, source=ref.uri)
    else:
        if ref.alias:
            mv = registry(lambda: client.get_model_version_by_alias(ref.name, ref.alias))
        else:
            mv = registry(lambda: client.get_model_version(ref.name, ref.version))
        identity = ModelIdentity(
            uri=ref.uri, name=mv.name, version=str(mv.version), run_id=mv.run_id or "", source=mv.source or ""
        )

    dest.mkdir(parents=True)
    registry(
        lambda: mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dest), tracking_uri=tracking_uri)
    )
    model_dir = _find_model_root(dest)
    return FetchedModel(
        model_dir, ModelIdentity(**{**vars(identity), "mlflow_version": _read_mlflow_version(model_dir)})
    )


def _find_model_root(dest: Path) -> Path:
    """download_artifacts nests the files under the artifact path's last component."""
    candidates = sorted(path.parent for path in dest.rglob("MLmodel"))
    if not candidates:
        raise ModelNotFoundError(f"the artifacts under {dest} hold no MLmodel file", f"pass {URI_FORMS}")
    return min(candidates, key=lambda path: len(path.parts))
