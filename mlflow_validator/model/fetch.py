"""Stage 0: resolve a model URI, list its files, and download what the stages need.

The static stage needs only the small files (MLmodel, environment files, examples, code), so large
files such as weights are downloaded only when a later stage asks for them (`download_rest`).
"""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from mlflow_validator.errors import ModelNotFoundError, UsageError
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.registry import NOT_FOUND_CODES, Registry
from mlflow_validator.results import ModelIdentity
from mlflow_validator.settings import Options

T = TypeVar("T")

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|(?i:latest))|@(?P<alias>[\w-]+))/?$")
LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{8,64}")  # MLflow 3's LoggedModel ids
_LOGGED_MODEL_URI = re.compile(rf"^models:/(?P<model_id>{LOGGED_MODEL_ID.pattern})/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$")

URI_FORMS = (
    "models:/NAME/VERSION, models:/NAME/latest, models:/NAME@ALIAS, models:/m-ID (a logged model), "
    "runs:/RUN_ID/PATH or a local model directory"
)
# Files above this size wait until a stage needs them, unless the static checks read them.
SMALL_FILE_BYTES = 1024 * 1024
STATIC_SUFFIXES = (".yaml", ".yml", ".txt", ".json", ".py", ".toml", ".lock", ".cfg", ".ini", ".md")


@dataclass(frozen=True)
class ModelReference:
    """A parsed model URI, before any network call."""

    uri: str
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    model_id: str = ""  # a logged model's (models:/m-…)
    local_path: Path | None = None

    @property
    def latest(self) -> bool:
        return self.version.lower() == "latest"


@dataclass
class FetchedModel:
    files: ModelFiles  # the directory, the store's listing, and the files' typed views
    identity: ModelIdentity
    pending: list[str] = field(default_factory=list)  # listed, not downloaded yet
    tags: dict[str, str] = field(default_factory=dict)  # the registered version's (or the run's) tags
    download: Callable[[str], None] | None = None

    @property
    def directory(self) -> Path:
        return self.files.directory

    def download_rest(self) -> None:
        """Fetch the files the static stage did not need (weights), before a stage loads the model."""
        while self.pending:
            assert self.download is not None
            self.download(self.pending[0])
            self.pending.pop(0)


def parse_model_uri(uri: str) -> ModelReference:
    """Pure parse of the supported URI forms; anything else is a usage error."""
    if match := _LOGGED_MODEL_URI.match(uri):
        return ModelReference(uri, model_id=match["model_id"])
    if match := _MODELS_URI.match(uri):
        return ModelReference(uri, name=match["name"], version=match["version"] or "", alias=match["alias"] or "")
    if match := _RUNS_URI.match(uri):
        return ModelReference(uri, run_id=match["run_id"])
    if "://" not in uri and ":/" not in uri:
        return ModelReference(uri, name=Path(uri).name, local_path=Path(uri).expanduser())
    raise UsageError(f"unsupported model URI '{uri}'", f"use {URI_FORMS}")


def needed_by_static_checks(path: str, size: int | None) -> bool:
    return size is None or size <= SMALL_FILE_BYTES or path.endswith(STATIC_SUFFIXES) or path == "MLmodel"


def _with_mlflow_version(files: ModelFiles, identity: ModelIdentity) -> FetchedModel:
    with suppress(ModelFileError):  # the static stage's mlmodel check reports it
        identity = replace(identity, mlflow_version=files.mlmodel.mlflow_version)
    return FetchedModel(files, identity)


def _local_listing(model_dir: Path) -> dict[str, int | None]:
    """Regular files only: a link is never followed (integrity reports those that leave the model)."""
    return {
        str(p.relative_to(model_dir)): p.lstat().st_size
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _fetch_local(ref: ModelReference, dest: Path) -> FetchedModel:
    assert ref.local_path is not None
    if not (ref.local_path / "MLmodel").is_file():
        raise ModelNotFoundError(
            f"{ref.local_path} is not an MLflow model directory (no MLmodel file)", f"pass {URI_FORMS}"
        )
    shutil.copytree(ref.local_path, dest, symlinks=True)  # a link stays a link: its target is not the model's
    identity = ModelIdentity(uri=ref.uri, name=ref.name, source=str(ref.local_path.resolve()))
    return _with_mlflow_version(ModelFiles(dest, _local_listing(dest)), identity)


def _model_root(dest: Path) -> Path:
    """download_artifacts nests the files under the artifact path's last component."""
    roots = sorted((path.parent for path in dest.rglob("MLmodel")), key=lambda path: len(path.parts))
    if not roots:
        raise ModelNotFoundError(f"the artifacts under {dest} hold no MLmodel file", f"pass {URI_FORMS}")
    return roots[0]


def _identity(client: Any, ref: ModelReference) -> tuple[ModelIdentity, dict[str, str]]:
    """Who the model is, and its tags: the version's for a registered model (an alias or `latest` resolved
    as MLflow resolves them), the logged model's for models:/m-…, the run's for runs:/."""
    if ref.run_id:
        run = client.get_run(ref.run_id)
        identity = ModelIdentity(uri=ref.uri, name=run.info.run_name or ref.run_id, run_id=ref.run_id, source=ref.uri)
        return identity, dict(run.data.tags)
    if ref.model_id:
        logged = client.get_logged_model(ref.model_id)
        identity = ModelIdentity(
            uri=ref.uri, name=logged.name, run_id=logged.source_run_id or "", source=logged.artifact_location,
            model_id=logged.model_id,
        )  # fmt: skip
        return identity, dict(logged.tags or {})
    if ref.alias:
        version = client.get_model_version_by_alias(ref.name, ref.alias)
    else:
        version = client.get_model_version(ref.name, _latest_version(client, ref.name) if ref.latest else ref.version)
    identity = ModelIdentity(
        uri=ref.uri, name=version.name, version=str(version.version), run_id=version.run_id or "",
        source=version.source, model_id=getattr(version, "model_id", None) or "",
    )  # fmt: skip
    return identity, dict(version.tags or {})


def _latest_version(client: Any, name: str) -> str:
    """MLflow's own reading of models:/NAME/latest: the newest version in any stage."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import _get_latest_model_version

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated; `latest` is read through them
        try:
            return str(_get_latest_model_version(client, name, None))
        except MlflowException as exc:
            if exc.error_code in NOT_FOUND_CODES:
                raise  # an unknown model: named as such by the registry client
            raise ModelNotFoundError(
                f"models:/{name}/latest names no version: {' '.join(str(exc.message).split())[:200]}",
                "register a version of the model, or name one (models:/NAME/VERSION)",
            ) from None


def pinned_uri(ref: ModelReference, identity: ModelIdentity) -> str:
    """The URI the files are fetched from: an alias or `latest` pinned to the version resolved, so that a
    version registered meanwhile is not the one validated."""
    if ref.alias or ref.latest:
        return f"models:/{identity.name}/{identity.version}"
    return ref.uri


def _list_recursively(repo: Any, path: str = "") -> dict[str, int | None]:
    listing: dict[str, int | None] = {}
    for info in repo.list_artifacts(path):
        if info.is_dir:
            listing.update(_list_recursively(repo, info.path))
        else:
            listing[info.path] = info.file_size
    return listing


def fetch_model(options: Options, dest: Path, *, static_files_only: bool) -> FetchedModel:
    """Resolve `options.model_uri` into `dest` (which must not exist).

    With static_files_only, large files stay in the store until `download_rest()` is called.
    """
    ref = parse_model_uri(options.model_uri)
    if ref.local_path is not None:
        return _fetch_local(ref, dest)

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    registry = Registry.for_options(options)
    tracking_uri, registry_uri = registry.tracking_uri, registry.registry_uri

    def bounded(call: Callable[[], T]) -> T:
        return registry.call(call, ref.uri)

    identity, tags = bounded(lambda: _identity(registry.client, ref))
    if ref.run_id:
        # MLflow 3 serves runs:/ through a logged-model indirection that lists paths it cannot
        # download one by one; fetch the whole model instead.
        import mlflow.artifacts

        dest.mkdir(parents=True)
        bounded(lambda: mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(dest)))
        root = _model_root(dest)
        fetched = _with_mlflow_version(ModelFiles(root, _local_listing(root)), identity)
        fetched.tags = tags
        return fetched
    source = pinned_uri(ref, identity)
    repo = bounded(lambda: get_artifact_repository(source, tracking_uri=tracking_uri, registry_uri=registry_uri))
    listing = bounded(lambda: _list_recursively(repo))
    if "MLmodel" not in listing:
        raise ModelNotFoundError(f"{ref.uri} holds no MLmodel file, so it is not an MLflow model", f"pass {URI_FORMS}")

    dest.mkdir(parents=True)

    def download(path: str) -> None:
        bounded(lambda: repo.download_artifacts(path, str(dest)))

    now = [path for path, size in listing.items() if not static_files_only or needed_by_static_checks(path, size)]
    for path in now:
        download(path)
    fetched = _with_mlflow_version(ModelFiles(dest, listing), identity)
    fetched.tags = tags
    fetched.pending = [path for path in listing if path not in now]
    fetched.download = download
    return fetched
