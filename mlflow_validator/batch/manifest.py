"""The deployment manifest (`mlflow-models.yaml`): which registered model version each environment runs.

Parsed once into typed entries that remember their line, so every complaint about an entry names the
file and the line; compared with a git ref to find the entries a pull request changed; resolved against
the registry so an alias becomes the version it points at now.

    environments:
      production:
        iris-classifier: 3               # a version
        fraud-scorer: "@champion"        # an alias
      review:
        iris-classifier: latest          # the newest version, when the plan is made
        chat-agent: m-4a1d…              # a logged model (MLflow 3), registered or not
      staging:
        iris-classifier:
          version: 4
          requests: models/iris/requests # paths are relative to the manifest's directory
          stages: [static, venv]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mlflow_validator import commands
from mlflow_validator.errors import CommandError, ModelNotFoundError, UsageError
from mlflow_validator.model.fetch import LOGGED_MODEL_ID
from mlflow_validator.model.registry import Registry
from mlflow_validator.results import SELECTABLE_STAGES
from mlflow_validator.settings.types import did_you_mean

T = TypeVar("T")

DEFAULT_MANIFEST = "mlflow-models.yaml"
GIT_TIMEOUT_S = 60
# Per-model settings, each the validate flag of the same name; paths are relative to the manifest.
SETTING_FLAGS = {"config": "--config", "requests": "--requests", "baseline": "--baseline", "stages": "--stages"}
PATH_SETTINGS = ("config", "requests")
ENTRY_KEYS = ["version", "alias", "model_id", *SETTING_FLAGS]


class ManifestError(UsageError):
    """A manifest entry that cannot be validated; `path` and `line` say where, for people and annotations."""

    def __init__(self, path: Path, line: int, problem: str, fix: str) -> None:
        super().__init__(f"{path}:{line}: {problem}", fix, file=path, line=line)


@dataclass(frozen=True)
class ManifestEntry:
    environment: str
    name: str
    line: int
    version: str = ""  # a number, or `latest`
    alias: str = ""
    model_id: str = ""  # a logged model's
    config: str = ""
    requests: str = ""
    baseline: str = ""
    stages: str = ""

    @property
    def id(self) -> str:
        return f"{self.environment}/{self.name}"

    @property
    def model_uri(self) -> str:
        if self.model_id:
            return f"models:/{self.model_id}"
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"

    @property
    def settings(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in SETTING_FLAGS if getattr(self, key)}


@dataclass(frozen=True)
class Manifest:
    path: Path
    entries: tuple[ManifestEntry, ...]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def entry(self, entry_id: str) -> ManifestEntry:
        found = {entry.id: entry for entry in self.entries}
        if entry_id not in found:
            raise UsageError(
                f"{self.path} has no entry '{entry_id}'{did_you_mean(entry_id, list(found))}",
                "name an entry as ENVIRONMENT/MODEL, as `mlflow-validator plan` prints them",
            )
        return found[entry_id]

    def flags(self, entry: ManifestEntry) -> list[str]:
        """The validate flags for the entry's own settings, its paths made relative to the working directory."""
        flags = []
        for key, value in entry.settings.items():
            flags += [SETTING_FLAGS[key], str(self.directory / value) if key in PATH_SETTINGS else value]
        return flags

    def files(self, entry: ManifestEntry) -> list[Path]:
        return [self.directory / getattr(entry, key) for key in PATH_SETTINGS if getattr(entry, key)]


def load_manifest(path: Path) -> Manifest:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the manifest {path} ({exc.strerror})", "check the --manifest path") from None
    return parse_manifest(text, path)


def parse_manifest(text: str, path: Path) -> Manifest:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ManifestError(path, line, f"not valid YAML ({exc.problem})", "fix its syntax") from None
    example = "environments: {production: {MODEL_NAME: VERSION}}"
    if not isinstance(root, yaml.MappingNode):
        raise ManifestError(path, 1, "the manifest must be a mapping with an `environments` key", f"write {example}")
    top = dict(_pairs(root, path))
    unknown = [key for key in top if key != "environments"]
    if unknown:
        key_node = top[unknown[0]][0]
        raise ManifestError(path, _line(key_node), f"unknown key '{unknown[0]}'", f"the manifest holds {example}")
    if "environments" not in top:
        raise ManifestError(path, 1, "the manifest has no `environments` key", f"write {example}")
    environments = _mapping(top["environments"][1], path, "`environments` must map environment names to models")
    entries = []
    for environment, (_, models_node) in _pairs(environments, path):
        models = _mapping(models_node, path, f"environment '{environment}' must map model names to versions")
        for name, (key_node, value_node) in _pairs(models, path):
            entries.append(_entry(environment, name, _line(key_node), value_node, path))
    return Manifest(path, tuple(entries))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _pairs(node: yaml.MappingNode, path: Path) -> Iterator[tuple[str, tuple[yaml.Node, yaml.Node]]]:
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise ManifestError(path, _line(key_node), f"'{key}' appears twice", "keep one of them")
        seen.add(key)
        yield key, (key_node, value_node)


def _mapping(node: yaml.Node, path: Path, problem: str) -> yaml.MappingNode:
    if not isinstance(node, yaml.MappingNode):
        raise ManifestError(path, _line(node), problem, "see the manifest format in docs/ci.md")
    return node


def _scalar_reference(value: str) -> dict[str, str]:
    if value.startswith("@"):
        return {"alias": value[1:]}
    if LOGGED_MODEL_ID.fullmatch(value):
        return {"model_id": value}
    return {"version": value}


def _entry(environment: str, name: str, line: int, node: yaml.Node, path: Path) -> ManifestEntry:
    where = f"'{environment}/{name}'"
    if isinstance(node, yaml.ScalarNode):
        values = _scalar_reference(str(node.value))
    else:
        values = {}
        for key, (key_node, value_node) in _pairs(
            _mapping(node, path, f"{where} must be a version or a mapping"), path
        ):
            if key not in ENTRY_KEYS:
                raise ManifestError(
                    path,
                    _line(key_node),
                    f"{where} has an unknown key '{key}'{did_you_mean(key, ENTRY_KEYS)}",
                    f"an entry takes {', '.join(ENTRY_KEYS)}",
                )
            values[key] = _setting_text(key, value_node, path)
    if sum(bool(values.get(key)) for key in ("version", "alias", "model_id")) != 1:
        raise ManifestError(
            path, line, f"{where} needs exactly one of a version, an alias or a logged model's id",
            "write 3, latest, '@champion' or m-<id>",
        )  # fmt: skip
    version = values.get("version", "")
    if version and not (version.isdigit() or version.lower() == "latest"):
        raise ManifestError(
            path,
            line,
            f"{where} has version '{version}', which is not a number",
            "write a version number or latest, an alias as '@NAME', or a logged model's id m-<id>",
        )
    if values.get("model_id") and not LOGGED_MODEL_ID.fullmatch(values["model_id"]):
        raise ManifestError(path, line, f"{where} has model_id '{values['model_id']}'", "write MLflow's m-<hex> id")
    return ManifestEntry(environment, name, line, **values)


def _setting_text(key: str, node: yaml.Node, path: Path) -> str:
    """A setting's value as the flag takes it; `stages` may also be a list, and must name stages."""
    if isinstance(node, yaml.SequenceNode) and key == "stages":
        stages = [str(item.value).strip() for item in node.value]
    elif isinstance(node, yaml.ScalarNode):
        text = str(node.value)
        if key != "stages":
            return text.removeprefix("@") if key == "alias" else text
        stages = [stage.strip() for stage in text.split(",")]
    else:
        raise ManifestError(path, _line(node), f"'{key}' must be a single value", "write it on one line")
    known = [stage.value for stage in SELECTABLE_STAGES]
    for stage in stages:
        if stage not in known:
            raise ManifestError(
                path,
                _line(node),
                f"unknown stage '{stage}'{did_you_mean(stage, known)}",
                f"stages are {', '.join(known)}",
            )
    return ",".join(stages)


# --- what a pull request changed -------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    entry: ManifestEntry
    reasons: tuple[str, ...]


def _git(args: list[str], cwd: Path) -> commands.CommandResult:
    return commands.run(["git", *args], cwd=cwd, timeout_s=GIT_TIMEOUT_S, check=False)


def _repository_root(directory: Path) -> Path:
    found = _git(["rev-parse", "--show-toplevel"], directory)
    if not found.ok:
        raise UsageError(f"{directory} is not in a git repository", "--base compares with a git ref: run it in a clone")
    return Path(found.output.strip())


def _base_manifest(manifest: Manifest, root: Path, base_ref: str) -> Manifest | None:
    """The manifest as it was at `base_ref`; None when it did not exist there."""
    if not _git(["rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}"], root).ok:
        raise UsageError(
            f"git knows no commit '{base_ref}'",
            "fetch it first (actions/checkout with fetch-depth: 0, or GIT_DEPTH: 0 on GitLab)",
        )
    relative = manifest.path.resolve().relative_to(root)
    shown = _git(["show", f"{base_ref}:{relative.as_posix()}"], root)
    if not shown.ok:
        return None
    try:
        return parse_manifest(shown.output, manifest.path)
    except ManifestError:
        return None  # a broken manifest at the base: every entry of the fixed one counts as changed


def _changed_files(root: Path, base_ref: str, paths: list[Path]) -> set[Path]:
    if not paths:
        return set()
    relative = [str(path.resolve().relative_to(root)) for path in paths]
    listed = _git(["diff", "--name-only", base_ref, "--", *relative], root)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "--", *relative], root)
    for result in (listed, untracked):
        if not result.ok:
            raise CommandError(f"git could not compare with {base_ref}: {commands.last_line(result.output)}")
    return {root / line for line in (listed.output + untracked.output).splitlines() if line.strip()}


def select(manifest: Manifest, entry_id: str | None, base_ref: str | None) -> list[Change]:
    """The entry --entry names; else those changed since --base; else all of them."""
    if entry_id:
        return [Change(manifest.entry(entry_id), ("named by --entry",))]
    if base_ref:
        return changes_since(manifest, base_ref)
    return [Change(entry, ("in the manifest",)) for entry in manifest.entries]


def changes_since(manifest: Manifest, base_ref: str) -> list[Change]:
    """The entries the working tree added or changed against `base_ref`: the reference, a setting,
    or a file a setting names (the config file, a request file)."""
    root = _repository_root(manifest.directory)
    base = _base_manifest(manifest, root, base_ref)
    before = {entry.id: entry for entry in base.entries} if base else {}
    changed_files = _changed_files(root, base_ref, [p for e in manifest.entries for p in manifest.files(e)])
    changes = []
    for entry in manifest.entries:
        reasons = _reasons(entry, before.get(entry.id), manifest, changed_files, root)
        if reasons:
            changes.append(Change(entry, tuple(reasons)))
    return changes


def _reasons(
    entry: ManifestEntry, old: ManifestEntry | None, manifest: Manifest, changed_files: set[Path], root: Path
) -> list[str]:
    if old is None:
        return ["added"]
    reasons = []
    if (old.version, old.alias, old.model_id) != (entry.version, entry.alias, entry.model_id):
        reasons.append(f"{_reference(old)} -> {_reference(entry)}")
    for key in SETTING_FLAGS:
        if getattr(old, key) != getattr(entry, key):
            reasons.append(f"{key} changed")
    for path in manifest.files(entry):
        resolved = path.resolve()
        touched = sorted(f for f in changed_files if f == resolved or resolved in f.parents)
        reasons += [f"{f.relative_to(root)} changed" for f in touched]
    return reasons


def _reference(entry: ManifestEntry) -> str:
    if entry.model_id:
        return f"logged model {entry.model_id}"
    return f"version {entry.version}" if entry.version else f"alias @{entry.alias}"


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedEntry:
    entry: ManifestEntry
    version: str  # the alias's or `latest`'s version at the time of the plan, or the entry's own; "" for a logged model

    @property
    def model_uri(self) -> str:
        return self.entry.model_uri if self.entry.model_id else f"models:/{self.entry.name}/{self.version}"


def resolve_entry(registry: Registry, entry: ManifestEntry, path: Path) -> ResolvedEntry:
    """The entry's version; an unknown model, version, alias or logged model is a ManifestError with a suggestion."""
    if entry.model_id:
        try:
            registry.call(lambda: registry.client.get_logged_model(entry.model_id), entry.model_uri)
        except ModelNotFoundError:
            raise ManifestError(
                path, entry.line, f"the server at {registry.tracking_uri} has no logged model {entry.model_id}",
                "copy the id from the run's Models tab in the MLflow UI",
            ) from None  # fmt: skip
        return ResolvedEntry(entry, "")
    try:
        model = registry.call(lambda: registry.client.get_registered_model(entry.name), entry.model_uri)
    except ModelNotFoundError:
        names = [m.name for m in registry.call(lambda: registry.client.search_registered_models(), entry.model_uri)]
        raise ManifestError(
            path,
            entry.line,
            f"the registry at {registry.tracking_uri} has no model '{entry.name}'{did_you_mean(entry.name, names)}",
            "fix the model name",
        ) from None
    if entry.alias:
        aliases = dict(getattr(model, "aliases", {}) or {})
        if entry.alias not in aliases:
            raise ManifestError(
                path,
                entry.line,
                f"model '{entry.name}' has no alias '@{entry.alias}'{did_you_mean(entry.alias, list(aliases))}",
                _known("aliases", sorted(aliases)),
            )
        return ResolvedEntry(entry, str(aliases[entry.alias]))
    versions = registry.call(
        lambda: [v.version for v in registry.client.search_model_versions(f"name = '{entry.name}'")], entry.model_uri
    )
    if entry.version.lower() == "latest" and versions:  # as MLflow reads models:/NAME/latest: the newest
        return ResolvedEntry(entry, str(max(int(v) for v in versions)))
    if entry.version not in [str(v) for v in versions]:
        raise ManifestError(
            path,
            entry.line,
            f"model '{entry.name}' has no version {entry.version}",
            _known("versions", sorted((str(v) for v in versions), key=int)),
        )
    return ResolvedEntry(entry, entry.version)


def _known(what: str, names: list[str]) -> str:
    return f"its {what} are {', '.join(names)}" if names else f"it has no {what} yet"


@dataclass(frozen=True)
class ResolvedChange:
    resolved: ResolvedEntry
    reasons: tuple[str, ...]

    @property
    def entry(self) -> ManifestEntry:
        return self.resolved.entry


def plan_record(change: ResolvedChange, manifest: Manifest) -> dict[str, Any]:
    """One row of `plan`'s JSON: what a CI matrix job needs to validate the entry (the model's Python is added
    by `plan`, which fetches it)."""
    entry = change.entry
    record: dict[str, Any] = {
        "id": entry.id,
        "environment": entry.environment,
        "name": entry.name,
        "model_uri": change.resolved.model_uri,
        "version": change.resolved.version,
        "manifest": str(manifest.path),
        "line": entry.line,
        "reasons": list(change.reasons),
    }
    if entry.alias:
        record["alias"] = entry.alias
    if entry.model_id:
        record["model_id"] = entry.model_id
    return record


def gitlab_child_pipeline(records: list[dict[str, Any]], manifest: Manifest, component: str) -> dict[str, Any]:
    """A dynamic child pipeline validating each planned entry in a job of its own: the component's job
    with `parallel: matrix` over the entries. GitLab refuses a pipeline without jobs: nothing changed
    is one job that says so."""
    if not records:
        return {"nothing-to-validate": {"variables": {"GIT_STRATEGY": "none"}, "script": ["echo No entry changed"]}}
    return {
        "include": [{"component": component, "inputs": {"manifest": str(manifest.path), "entry": "$ENTRY"}}],
        "mlflow-validator": {"parallel": {"matrix": [{"ENTRY": [record["id"] for record in records]}]}},
    }
