"""The one client of the MLflow tracking server and model registry: fetching a model, resolving a manifest's
entries, writing the verdict back and doctor's write probe all call through it. Every call is bounded (MLflow's
own retries off, a timeout, and tenacity's retries while the server does not answer) and its failures named."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tenacity import retry, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from mlflow_validator.errors import ModelNotFoundError, RegistryUnreachableError
from mlflow_validator.settings import Options

T = TypeVar("T")
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")  # MLflow's, for "no such model"


class Registry:
    """An MLflow client for one tracking server and registry, with `call` bounding what is asked of it."""

    def __init__(self, tracking_uri: str, registry_uri: str, timeout_s: float) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.timeout_s = timeout_s
        self.client: Any = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

    @classmethod
    def for_options(cls, options: Options) -> Registry:
        """The server the options name (--tracking-uri, else MLFLOW_TRACKING_URI), and its registry."""
        from mlflow.tracking import get_tracking_uri

        tracking_uri = options.tracking_uri or get_tracking_uri()
        return cls(tracking_uri, options.registry_uri or tracking_uri, options.timeouts.registry)

    def call(self, what: Callable[[], T], uri: str) -> T:
        """`what` (a call on `client`, or on MLflow's artifact repositories, which read the global URIs),
        bounded; `uri` names the model in the errors."""
        with _client_settings(self.tracking_uri, self.registry_uri, self.timeout_s):
            return _bounded(what, uri, self.tracking_uri, self.timeout_s)


@contextmanager
def _client_settings(tracking_uri: str, registry_uri: str, timeout_s: float) -> Iterator[None]:
    """MLflow's artifact repositories read the global URIs, and its client retries for minutes
    by default; we set both for the duration of the fetch and retry with a bound of our own."""
    import mlflow

    overrides = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s))}
    saved_env = {key: os.environ.get(key) for key in overrides}
    saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    os.environ.update(overrides)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uris[0])
        mlflow.set_registry_uri(saved_uris[1])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _classify(exc: Exception, uri: str, tracking_uri: str) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in NOT_FOUND_CODES:
        return ModelNotFoundError(
            f"{uri} does not exist in the registry at {tracking_uri}",
            "check the name, version or alias (the MLflow UI lists them under Models)",
        )
    text = str(exc)
    if any(marker in text for marker in ("Connection refused", "Max retries exceeded", "timed out", "NameResolution")):
        return RegistryUnreachableError(
            f"the MLflow tracking server at {tracking_uri} did not answer",
            "check --tracking-uri / MLFLOW_TRACKING_URI and that the server is running",
        )
    return exc


def _bounded(call: Callable[[], T], uri: str, tracking_uri: str, timeout_s: float) -> T:
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
            raise _classify(exc, uri, tracking_uri) from exc

    return attempt()
