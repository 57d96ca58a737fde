"""One frozen options object, merged from defaults < config file < environment < flags.

The environment is passed in (never read here from os.environ), so tests can pass `env={}`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from validator.errors import UsageError
from validator.policies import POLICY_CHECKS, Policy
from validator.results import Stage

DEFAULT_CONFIG_FILE = "mlflow-validator.yaml"
ALL_STAGES = (Stage.STATIC, Stage.VENV, Stage.DOCKER)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Every wait in the validator is bounded by one of these."""

    registry: float = 60
    install: float = 900
    predict: float = 300
    docker_build: float = 1800
    container_start: float = 180
    request: float = 60


@dataclass(frozen=True)
class BuildNetwork:
    """How installs reach the package index: used by uv in the venv stage and by docker build."""

    ca_bundle: Path | None = None
    index_url: str | None = None
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """How far two floats may drift apart; integers, strings and booleans always compare exactly."""

    rtol: float = 1e-6
    atol: float = 1e-9
    # Per output column (a key of an answer's records; "predictions" for a plain list of values).
    columns: Mapping[str, Tolerance] = field(default_factory=dict)

    def for_column(self, column: str | None) -> Tolerance:
        return self.columns.get(column, self) if column else self


@dataclass(frozen=True)
class RequestSettings:
    """Which sample requests both stages answer, beyond the logged input example."""

    directory: Path | None = None  # user requests: *.json / *.csv, each optionally with NAME.expected.json
    batch_size: int = 16  # rows in the derived batch request
    latency_samples: int = 20  # repeats of the input example for the latency percentiles


@dataclass(frozen=True)
class Budgets:
    """Optional limits that fail the gate when exceeded; None means measured and reported only."""

    max_load_seconds: float | None = None
    max_latency_ms: float | None = None  # at p95 over RequestSettings.latency_samples requests
    max_changed_fraction: float | None = None  # of the values that differ from the baseline's answers


@dataclass(frozen=True)
class Options:
    model_uri: str
    stages: tuple[Stage, ...] = ALL_STAGES
    stages_explicit: bool = False  # an explicit docker stage makes a missing engine an error
    tracking_uri: str | None = None
    registry_uri: str | None = None
    output_dir: Path = Path("mlflow-validator-report")
    junit_xml: Path | None = None  # defaults to <output_dir>/junit.xml
    tolerance: Tolerance = Tolerance()
    timeouts: Timeouts = Timeouts()
    network: BuildNetwork = BuildNetwork()
    constraints: Path | None = None  # what the serving runtime already has installed
    requests: RequestSettings = RequestSettings()
    budgets: Budgets = Budgets()
    baseline_uri: str | None = None
    # Variables the model processes see beyond the allow-list, as declared in the config file (`env:`).
    model_env: Mapping[str, str] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)  # check name -> policy; absent means error
    keep: bool = False
    debug: bool = False

    @property
    def junit_path(self) -> Path:
        return self.junit_xml or self.output_dir / "junit.xml"

    def policy(self, check: str) -> Policy:
        return self.policies.get(check, Policy.ERROR)


@dataclass(frozen=True)
class Setting:
    """A key of the flat settings namespace: config `a: {b: 1}` is key `a.b`."""

    key: str
    parse: Callable[[Any], Any]
    env: tuple[str, ...] = ()  # first one set wins


def _path(value: Any) -> Path:
    return Path(str(value)).expanduser()


def _seconds(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _positive(value: Any) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _non_negative(value: Any) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != float(value) or int(value) < 1:
        raise ValueError("must be a whole number >= 1")
    return int(value)


def _fraction(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise ValueError("must be between 0 and 1")
    return number


def _column_tolerances(value: Any) -> dict[str, dict[str, float]]:
    if not isinstance(value, Mapping):
        raise ValueError("must map column names to {rtol: …, atol: …}")
    columns = {}
    for column, bounds in value.items():
        if not isinstance(bounds, Mapping) or not bounds or not set(bounds) <= {"rtol", "atol"}:
            raise ValueError(f"column '{column}' must be a mapping with rtol and/or atol")
        columns[str(column)] = {str(k): _non_negative(v) for k, v in bounds.items()}
    return columns


def _tolerance(settings: Mapping[str, Any]) -> Tolerance:
    """A column's tolerance takes what it does not set from the global one."""
    overall = Tolerance(settings.get("rtol", Tolerance.rtol), settings.get("atol", Tolerance.atol))
    columns = settings.get("columns", {})
    return replace(overall, columns={name: replace(overall, **bounds) for name, bounds in columns.items()})


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not _ENV_NAME.fullmatch(str(name)):
            raise ValueError(f"'{name}' is not an environment variable name")
    return tuple(str(name) for name in names)


def _env_values(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("must map variable names to values")
    _env_names(list(value))
    return {
        str(name): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for name, v in value.items()
    }


def parse_stages(value: Any) -> tuple[Stage, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    known = [stage.value for stage in Stage]
    stages = []
    for raw in names:
        name = str(raw).strip()
        if name not in known:
            raise ValueError(f"unknown stage '{name}'{_did_you_mean(name, known)}; stages are {', '.join(known)}")
        stages.append(Stage(name))
    if not stages:
        raise ValueError("name at least one stage")
    return tuple(stage for stage in ALL_STAGES if stage in stages)


def _policy(value: Any) -> Policy:
    if isinstance(value, bool):  # YAML reads a bare `off` as false and `on` as true
        return Policy.ERROR if value else Policy.OFF
    known = [policy.value for policy in Policy]
    if str(value) not in known:
        raise ValueError(f"unknown policy{_did_you_mean(str(value), known)}; policies are {', '.join(known)}")
    return Policy(str(value))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


SETTINGS = {
    setting.key: setting
    for setting in (
        Setting("stages", parse_stages, ("MLFLOW_VALIDATOR_STAGES",)),
        Setting("tracking_uri", str, ("MLFLOW_TRACKING_URI",)),
        Setting("registry_uri", str, ("MLFLOW_REGISTRY_URI",)),
        Setting("output_dir", _path, ("MLFLOW_VALIDATOR_OUTPUT_DIR",)),
        Setting("junit_xml", _path, ("MLFLOW_VALIDATOR_JUNIT_XML",)),
        Setting("keep", _bool, ("MLFLOW_VALIDATOR_KEEP",)),
        Setting("constraints", _path, ("MLFLOW_VALIDATOR_CONSTRAINTS",)),
        *(Setting(f"checks.{name}", _policy) for name in POLICY_CHECKS),
        Setting("tolerance.rtol", _non_negative, ("MLFLOW_VALIDATOR_RTOL",)),
        Setting("tolerance.atol", _non_negative, ("MLFLOW_VALIDATOR_ATOL",)),
        Setting("tolerance.columns", _column_tolerances),
        Setting("requests.directory", _path, ("MLFLOW_VALIDATOR_REQUESTS",)),
        Setting("requests.batch_size", _positive_int),
        Setting("requests.latency_samples", _positive_int),
        Setting("budgets.max_load_seconds", _seconds),
        Setting("budgets.max_latency_ms", _positive),
        Setting("budgets.max_changed_fraction", _fraction),
        Setting("baseline", str, ("MLFLOW_VALIDATOR_BASELINE",)),
        Setting("env.pass", _env_names),
        Setting("env.set", _env_values),
        *(
            Setting(f"timeouts.{name}", _seconds, (f"MLFLOW_VALIDATOR_TIMEOUT_{name.upper()}",))
            for name in Timeouts.__dataclass_fields__
        ),
        # A runner that already talks to its index through a custom CA says so to pip/requests;
        # the same CA must reach the builds we start, so those variables count too.
        Setting(
            "build.ca_bundle",
            _path,
            ("MLFLOW_VALIDATOR_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"),
        ),
        Setting("build.index_url", str, ("MLFLOW_VALIDATOR_INDEX_URL", "PIP_INDEX_URL", "UV_INDEX_URL")),
        Setting("build.http_proxy", str, ("HTTP_PROXY", "http_proxy")),
        Setting("build.https_proxy", str, ("HTTPS_PROXY", "https_proxy")),
        Setting("build.no_proxy", str, ("NO_PROXY", "no_proxy")),
    )
}


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in SETTINGS:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into flat keys; unknown keys are an error with a hint."""
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path} ({exc.strerror})", "check the --config path") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML ({exc})", "fix its syntax") from None
    if not isinstance(tree, Mapping):
        raise UsageError(f"config file {path} must be a mapping of settings", "see the README's config section")
    flat = _flatten(tree)
    for key in flat:
        if key not in SETTINGS:
            raise UsageError(
                f"unknown setting '{key}' in {path}{_did_you_mean(key, list(SETTINGS))}",
                "see the README's config section for the known settings",
            )
    return flat


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for setting in SETTINGS.values():
        for name in setting.env:
            if env.get(name):
                found[setting.key] = env[name]
                break
    return found


def _parse_all(raw: Mapping[str, tuple[Any, str]]) -> dict[str, Any]:
    parsed = {}
    for key, (value, origin) in raw.items():
        try:
            parsed[key] = SETTINGS[key].parse(value)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"invalid {key} from {origin}: {value!r} ({exc})", "correct the value") from None
    return parsed


def _check_network(network: BuildNetwork) -> None:
    if network.ca_bundle is not None and not network.ca_bundle.is_file():
        raise UsageError(
            f"CA bundle {network.ca_bundle} does not exist",
            "point --ca-bundle (or PIP_CERT / SSL_CERT_FILE) at a PEM file",
        )
    if network.index_url and urlsplit(network.index_url).password:
        raise UsageError(
            "index URLs with embedded credentials are not supported yet: "
            "docker build would keep them in the image history",
            "use an index URL without credentials",
        )


def _model_env(passed: tuple[str, ...], values: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    missing = [name for name in passed if name not in env]
    if missing:
        raise UsageError(
            f"env.pass names {', '.join(missing)}, which the environment does not set",
            "set it in the CI job, or give a value with `env: {set: {NAME: value}}`",
        )
    return {**{name: env[name] for name in passed}, **values}


def resolve_options(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_path: Path | None = None,
) -> Options:
    """Merge defaults < config file < env < flags. `flags` holds only flags the user gave."""
    raw: dict[str, tuple[Any, str]] = {}
    default_config = Path(DEFAULT_CONFIG_FILE)
    if config_path is None and default_config.is_file():
        config_path = default_config
    if config_path is not None:
        raw.update({k: (v, f"config file {config_path}") for k, v in load_config_file(config_path).items()})
    raw.update({k: (v, "the environment") for k, v in _from_env(env).items()})
    raw.update({k: (v, "the command line") for k, v in flags.items() if k in SETTINGS})
    values = _parse_all(raw)

    def section(prefix: str) -> dict[str, Any]:
        return {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(prefix + ".")}

    network = BuildNetwork(**section("build"))
    _check_network(network)
    constraints = values.get("constraints")
    if constraints is not None and not constraints.is_file():
        raise UsageError(
            f"constraints file {constraints} does not exist or is not a file",
            "point --constraints at the serving runtime's package list (name==version lines)",
        )
    requests = RequestSettings(**section("requests"))
    if requests.directory is not None and not requests.directory.is_dir():
        raise UsageError(
            f"requests directory {requests.directory} does not exist or is not a directory",
            "point --requests at a directory of *.json / *.csv request files",
        )
    return Options(
        model_uri=flags["model_uri"],
        stages=values.get("stages", ALL_STAGES),
        stages_explicit="stages" in raw,
        tracking_uri=values.get("tracking_uri"),
        registry_uri=values.get("registry_uri"),
        output_dir=values.get("output_dir", Options.output_dir),
        junit_xml=values.get("junit_xml"),
        tolerance=_tolerance(section("tolerance")),
        timeouts=Timeouts(**section("timeouts")),
        network=network,
        constraints=constraints,
        requests=requests,
        budgets=Budgets(**section("budgets")),
        baseline_uri=values.get("baseline"),
        model_env=_model_env(values.get("env.pass", ()), values.get("env.set", {}), env),
        policies=section("checks"),
        keep=values.get("keep", False),
        debug=bool(flags.get("debug", False)),
    )
