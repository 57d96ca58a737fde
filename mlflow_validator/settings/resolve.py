"""Merge defaults < config file < environment < flags into one frozen `Options`.

The environment and the working directory are passed in (never read here), so tests can pass
`env={}` and any directory. Each value remembers where it came from (`Options.sources`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mlflow_validator.checks import Policy
from mlflow_validator.egress.destinations import BadDestination, Destination, expand, parse_destination
from mlflow_validator.errors import UsageError
from mlflow_validator.settings.declared import BY_KEY, SECTIONS, SETTINGS, Setting
from mlflow_validator.settings.options import Options
from mlflow_validator.settings.types import TEAM_CHECK_KEY, did_you_mean

DEFAULT_CONFIG_FILE = "mlflow-validator.yaml"
CONFIG_KEYS = [setting.key for setting in SETTINGS if setting.declaration.in_config_file]
# Keys inside a mapping setting whose keys are fixed, e.g. checks.pinned: checked like settings.
FIXED_KEYS = [f"{s.key}.{name}" for s in SETTINGS for name in s.declaration.type.keys]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        mapping_setting = dotted in BY_KEY and BY_KEY[dotted].declaration.type.is_mapping
        if isinstance(value, Mapping) and not mapping_setting:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into flat keys; unknown keys are an error with a hint."""
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path} ({exc.strerror})", "check the --config path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UsageError(
            f"config file {path} is not valid YAML ({_one_line(exc)})",
            "fix its syntax",
            file=path,
            line=mark.line + 1 if mark is not None else 0,
        ) from None
    if not isinstance(tree, Mapping):
        raise UsageError(
            f"config file {path} must be a mapping of settings", "see docs/configuration.md for the settings", file=path
        )
    flat = _flatten(tree)
    inner = [
        f"{key}.{name}"
        for key, value in flat.items()
        if key in CONFIG_KEYS and BY_KEY[key].declaration.type.keys and isinstance(value, Mapping)
        for name in value
        if not TEAM_CHECK_KEY.search(str(name))
    ]
    for key in [*flat, *inner]:
        if key not in CONFIG_KEYS + FIXED_KEYS:
            raise UsageError(
                f"unknown setting '{key}' in {path}{did_you_mean(key, CONFIG_KEYS + FIXED_KEYS)}",
                "see docs/configuration.md for the known settings",
                file=path,
            )
    return flat


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    for setting in SETTINGS:
        name = next((name for name in setting.declaration.env if env.get(name)), None)
        if name:
            found[setting.key] = (env[name], f"environment {name}")
    return found


def _parse(setting: Setting, value: Any, origin: str, cwd: Path) -> Any:
    try:
        parsed = setting.declaration.type.parse(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"invalid {setting.key} from {origin}: {value!r} ({exc})", "correct the value") from None
    if isinstance(parsed, Path) and not parsed.is_absolute():
        return cwd / parsed
    return parsed


def _check_values(options: Options) -> None:
    if options.docker.push and not options.docker.image_tag:
        raise UsageError("--push needs --image-tag", "name the image to push: --image-tag registry:5000/team/model:1")
    if options.docker.image_tag and options.docker.serving == "mlserver":
        raise UsageError(
            "--image-tag keeps the image of MLflow's scoring server, which --serving mlserver does not build",
            "validate both and keep the scoring server's image: --serving both",
        )
    if options.build.ca_bundle is not None and not options.build.ca_bundle.is_file():
        raise UsageError(
            f"CA bundle {options.build.ca_bundle} does not exist",
            "point --ca-bundle (or PIP_CERT / SSL_CERT_FILE) at a PEM file",
        )
    if options.constraints is not None and not options.constraints.is_file():
        raise UsageError(
            f"constraints file {options.constraints} does not exist or is not a file",
            "point --constraints at the serving runtime's package list (name==version lines)",
        )
    directory = options.requests.directory
    if directory is not None and not directory.is_dir():
        raise UsageError(
            f"requests directory {directory} does not exist or is not a directory",
            "point --requests at a directory of *.json / *.csv request files",
        )


def _model_env(options: Options, env: Mapping[str, str]) -> dict[str, str]:
    passed, values = options.env.passed, options.env.values
    missing = [name for name in passed if name not in env]
    if missing:
        raise UsageError(
            f"env.pass names {', '.join(missing)}, which the environment does not set",
            "set it in the CI job, or give a value with `env: {set: {NAME: value}}`",
        )
    return {**{name: env[name] for name in passed}, **values}


def _egress(options: Options, env: Mapping[str, str]) -> tuple[Destination, ...]:
    destinations = []
    for entry in options.sandbox.egress:
        try:
            destinations.append(parse_destination(expand(entry, env)))
        except KeyError as exc:
            raise UsageError(
                f"sandbox.egress entry '{entry}' names {exc.args[0]}, which the environment does not set",
                "set it in the CI job, or write the destination itself (host:port or a URL)",
            ) from None
        except BadDestination as exc:
            raise UsageError(f"sandbox.egress: {exc}", "write each destination as host:port or a URL") from None
    return tuple(dict.fromkeys(destinations))


def _build(model_uri: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> Options:
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in values.items():
        setting = BY_KEY[key]
        (sections[setting.section] if setting.section else top)[setting.field] = value
    defaults = Options(model_uri)
    for section, fields in sections.items():
        top[section] = dataclasses.replace(getattr(defaults, section), **fields)
    return Options(model_uri, **top, sources=dict(sources))


def resolve_options(flags: Mapping[str, Any], env: Mapping[str, str], cwd: Path) -> Options:
    """Merge defaults < config file < env < flags. `flags` maps setting keys to the flags the user gave,
    plus `model_uri`. Relative paths are taken relative to `cwd`."""
    raw = _from_env(env)
    raw.update({key: (value, f"flag {BY_KEY[key].declaration.flag}") for key, value in flags.items() if key in BY_KEY})
    config_path = _parse(BY_KEY["config"], raw["config"][0], raw["config"][1], cwd) if "config" in raw else None
    if config_path is None and (cwd / DEFAULT_CONFIG_FILE).is_file():
        config_path = cwd / DEFAULT_CONFIG_FILE
    if config_path is not None:
        from_file = {k: (v, f"config file {config_path}") for k, v in load_config_file(config_path).items()}
        raw = {**from_file, **raw}
    values = {key: _parse(BY_KEY[key], value, origin, cwd) for key, (value, origin) in raw.items()}
    values["config"] = config_path
    for setting in SETTINGS:  # default paths are relative to the working directory too
        if setting.key not in values and isinstance(setting.default, Path):
            values[setting.key] = cwd / setting.default
    # A laptop without bubblewrap still validates; a CI job does not run a model uncaged unless told to.
    defaults = {"sandbox": Policy.ERROR if env.get("CI") else Policy.WARN, "generated-inputs": Policy.WARN}
    values["checks"] = {**defaults, **values.get("checks", {})}
    options = _build(flags["model_uri"], values, {key: origin for key, (_, origin) in raw.items()})
    _check_values(options)
    return dataclasses.replace(options, model_env=_model_env(options, env), egress=_egress(options, env))
