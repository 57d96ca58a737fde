"""The frozen options object. Each setting is declared once, as a field: its default, type, flag,
environment variables and help. Argument parsing, the environment, the config file, the JSON Schema
and the docs' options table are all derived from these fields (`settings.declared`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlflow_validator.checks import POLICY_CHECKS, Policy
from mlflow_validator.egress.destinations import Destination
from mlflow_validator.outputs import DEFAULT_DIR, JUNIT_FILE
from mlflow_validator.results import SELECTABLE_STAGES, Stage
from mlflow_validator.settings import types as t

SETTING = "mlflow-validator.setting"
EARLY_BUILD_CORES = 2  # measured: on 2 cores the early build saves 5-7 s of a cold run and slows the venv stage by <1 s


@dataclass(frozen=True)
class Declaration:
    """What a field needs beyond its name and default to be a setting."""

    type: t.ValueType
    help: str
    flag: str = ""  # e.g. "--tracking-uri"; empty: config file (and env) only
    env: tuple[str, ...] = ()  # the first one set wins
    in_config_file: bool = True
    key: str = ""  # the config key where the field name cannot be it (`pass` is a Python keyword)
    secret: bool = False  # printed redacted by `mlflow-validator config`
    default_text: str = ""  # what the docs say the default is, where the value alone would mislead


def setting(default: Any, type: t.ValueType, help: str, **declared: Any) -> Any:
    """A dataclass field that is a setting. Mutable defaults (mappings) are copied per instance."""
    metadata = {SETTING: Declaration(type, help, **declared)}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Every wait in the validator is bounded by one of these."""

    registry: float = setting(
        60,
        t.SECONDS,
        "each call to the tracking server or registry, retries included",
        env=("MLFLOW_VALIDATOR_TIMEOUT_REGISTRY",),
    )
    install: float = setting(
        900, t.SECONDS, "resolving and installing the requirements with uv", env=("MLFLOW_VALIDATOR_TIMEOUT_INSTALL",)
    )
    predict: float = setting(
        300,
        t.SECONDS,
        "loading the model and answering every request in the venv",
        env=("MLFLOW_VALIDATOR_TIMEOUT_PREDICT",),
    )
    docker_build: float = setting(
        1800, t.SECONDS, "building the serving image", env=("MLFLOW_VALIDATOR_TIMEOUT_DOCKER_BUILD",)
    )
    docker_push: float = setting(
        600, t.SECONDS, "pushing the kept image (--push)", env=("MLFLOW_VALIDATOR_TIMEOUT_DOCKER_PUSH",)
    )
    container_start: float = setting(
        180, t.SECONDS, "the serving container answering /ping", env=("MLFLOW_VALIDATOR_TIMEOUT_CONTAINER_START",)
    )
    request: float = setting(
        60,
        t.SECONDS,
        "each request to the serving container or the venv's model process",
        env=("MLFLOW_VALIDATOR_TIMEOUT_REQUEST",),
    )
    checks: float = setting(
        600, t.SECONDS, "the team's checks (--checks), per stage", env=("MLFLOW_VALIDATOR_TIMEOUT_CHECKS",)
    )


@dataclass(frozen=True)
class BuildNetwork:
    """How installs reach the package index: used by uv in the venv stage and by docker build."""

    # A runner that already talks to its index through a custom CA says so to pip/requests;
    # the same CA must reach the builds we start, so those variables count too.
    ca_bundle: Path | None = setting(
        None,
        t.PATH,
        "PEM CA bundle for installs",
        flag="--ca-bundle",
        env=("MLFLOW_VALIDATOR_CA_BUNDLE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"),
    )
    index_url: str | None = setting(
        None,
        t.TEXT,
        "package index for installs",
        flag="--index-url",
        env=("MLFLOW_VALIDATOR_INDEX_URL", "PIP_INDEX_URL", "UV_INDEX_URL"),
        default_text="PyPI",
    )
    extra_index_urls: tuple[str, ...] = setting(
        (),
        t.URLS,
        "more package indexes, searched after index_url (credentials in the URL are kept out of every output)",
        flag="--extra-index-url",
        env=("MLFLOW_VALIDATOR_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"),
    )
    http_proxy: str | None = setting(None, t.TEXT, "proxy for http:// URLs", env=("HTTP_PROXY", "http_proxy"))
    https_proxy: str | None = setting(None, t.TEXT, "proxy for https:// URLs", env=("HTTPS_PROXY", "https_proxy"))
    no_proxy: str | None = setting(None, t.TEXT, "hosts reached without the proxy", env=("NO_PROXY", "no_proxy"))


@dataclass(frozen=True)
class Tolerance:
    """How far two floats may drift apart; integers, strings and booleans always compare exactly."""

    rtol: float = setting(
        1e-6, t.NON_NEGATIVE, "relative tolerance for floats", flag="--rtol", env=("MLFLOW_VALIDATOR_RTOL",)
    )
    atol: float = setting(
        1e-9, t.NON_NEGATIVE, "absolute tolerance for floats", flag="--atol", env=("MLFLOW_VALIDATOR_ATOL",)
    )
    # Per output column (a key of an answer's records; "predictions" for a plain list of values).
    columns: Mapping[str, Mapping[str, float]] = setting(
        {},
        t.COLUMN_TOLERANCES,
        "per output column; what a column does not set comes from rtol/atol",
        default_text="the global tolerance",
    )

    def for_column(self, column: str | None) -> Tolerance:
        bounds = self.columns.get(column) if column else None
        return replace(self, **bounds, columns={}) if bounds else self


@dataclass(frozen=True)
class RequestSettings:
    """Which sample requests both stages answer, beyond the logged input example."""

    directory: Path | None = setting(
        None,
        t.PATH,
        "directory of sample requests (*.json, *.csv), each optionally with NAME.expected.json",
        flag="--requests",
        env=("MLFLOW_VALIDATOR_REQUESTS",),
        default_text="none: the example and the derived requests only",
    )
    batch_size: int = setting(16, t.WHOLE, "rows in the derived batch request")
    latency_samples: int = setting(20, t.WHOLE, "repeats of the input example for the latency percentiles")


@dataclass(frozen=True)
class GeneratedInputs:
    """What the generated-inputs check asks the model, built from its input signature by Hypothesis."""

    examples: int = setting(
        50,
        t.WHOLE,
        "generated inputs asked of the model, beyond the extremes of each type",
        env=("MLFLOW_VALIDATOR_GENERATED_EXAMPLES",),
    )
    seed: int = setting(1, t.WHOLE, "Hypothesis' random seed, printed in the report: a seed asks the same inputs")


@dataclass(frozen=True)
class Budgets:
    """Optional limits that fail the gate when exceeded; None means measured and reported only."""

    max_load_seconds: float | None = setting(
        None,
        t.SECONDS,
        "model load in the venv; /ping ready in the container",
        default_text="none: measured and reported only",
    )
    max_latency_ms: float | None = setting(
        None,
        t.POSITIVE,
        "p95 latency over requests.latency_samples requests",
        default_text="none: measured and reported only",
    )
    max_changed_fraction: float | None = setting(
        None,
        t.FRACTION,
        "with a baseline: the share of values that may change",
        default_text="none: measured and reported only",
    )
    max_upstream_calls: int | None = setting(
        None,
        t.WHOLE,
        "calls through `sandbox.egress` per prediction (a loop on an LLM is caught)",
        default_text="none: measured and reported only",
    )


@dataclass(frozen=True)
class ModelEnvironment:
    """Variables the model processes see beyond the allow-list."""

    passed: tuple[str, ...] = setting(
        (),
        t.ENV_NAMES,
        "variables passed from the job (exit 2 if one is unset)",
        key="pass",
        default_text="nothing beyond the allow-list",
    )
    values: Mapping[str, str] = setting(
        {},
        t.ENV_VALUES,
        "variables set to fixed values",
        key="set",
        secret=True,
        default_text="nothing beyond the allow-list",
    )


@dataclass(frozen=True)
class PickleSettings:
    """How the static stage judges the model's pickles."""

    trusted: tuple[str, ...] = setting(
        (),
        t.MODULE_NAMES,
        "modules (with their submodules) whose classes your team vouches for: a pickle may name them and have "
        "them made and given their state, and is still `safe`; the report lists what was trusted, and every "
        "other rule still applies (calling them while loading is not trusted)",
        default_text="none",
    )


@dataclass(frozen=True)
class SandboxSettings:
    """The cage the venv stage's model process runs in, and its limits."""

    backend: str = setting(
        "auto",
        t.one_of("auto", "bubblewrap", "container"),
        "what cages the model: bubblewrap on this machine, or a container of the run's dependency image on the "
        "Docker engine (no network, no capability, read-only root); `auto` takes bubblewrap where it can start",
        flag="--sandbox-backend",
        env=("MLFLOW_VALIDATOR_SANDBOX_BACKEND",),
    )
    memory_mb: int = setting(
        8192, t.WHOLE, "memory of the model's processes: each one's address space, and all together resident (MiB)"
    )
    max_processes: int = setting(256, t.WHOLE, "processes and threads the model may run at once, all together")
    egress: tuple[str, ...] = setting(
        (),
        t.EGRESS,
        "destinations the model may reach (an LLM endpoint, an API), through a proxy outside its cage that "
        "allows these and nothing else and records every connection",
        flag="--egress",
        env=("MLFLOW_VALIDATOR_EGRESS",),
        default_text="none: the model reaches nothing",
    )


@dataclass(frozen=True)
class PythonSettings:
    """Where the venv stage gets the model's Python when this machine has no interpreter of its minor release."""

    downloads: str = setting(
        "never",
        t.one_of("never", "auto"),
        "`auto` lets uv install the model's Python when the machine has none of its minor release (from "
        "UV_PYTHON_INSTALL_MIRROR or UV_PYTHON_DOWNLOADS_JSON_URL where set, for closed networks); with `never` "
        "the model runs in a container of its exact Python on the Docker engine instead, where one answers",
        flag="--python-downloads",
        env=("MLFLOW_VALIDATOR_PYTHON_DOWNLOADS",),
    )


@dataclass(frozen=True)
class DockerSettings:
    """The engine and CLI the docker stage uses, and the limits of the serving container."""

    cli: str = setting(
        "docker",
        t.TEXT,
        "the docker CLI; it must build with BuildKit (the buildx plugin, or a 20.10 client)",
        flag="--docker-cli",
        env=("MLFLOW_VALIDATOR_DOCKER_CLI",),
    )
    serving: str = setting(
        "mlflow",
        t.one_of("mlflow", "mlserver", "both"),
        "what serves the model in the docker stage: MLflow's scoring server (`build-docker`'s image), MLServer "
        "(KServe's V2 protocol, as `build-docker --enable-mlserver` built it before MLflow 3.13), or both, "
        "each compared with the venv's answers",
        flag="--serving",
        env=("MLFLOW_VALIDATOR_SERVING",),
    )
    memory_mb: int | None = setting(
        None,
        t.MEMORY,
        "memory limit of the serving container, as the target instance has it",
        flag="--memory",
        env=("MLFLOW_VALIDATOR_DOCKER_MEMORY",),
        key="memory",
        default_text="no limit",
    )
    # Container CPU quotas do not show in os.cpu_count(): a runner that knows better says so.
    build_during_venv: bool | None = setting(
        None,
        t.BOOL,
        "build the dependency image while the venv stage runs",
        flag="--build-during-venv",
        env=("MLFLOW_VALIDATOR_BUILD_DURING_VENV",),
        default_text=f"when the machine has {EARLY_BUILD_CORES} cores or more",
    )
    image_tag: str | None = setting(
        None,
        t.IMAGE_REFERENCE,
        "keep the validated image under this NAME:TAG when the gate passes; its ID goes into image.json and the report",
        flag="--image-tag",
        env=("MLFLOW_VALIDATOR_IMAGE_TAG",),
        default_text="the image is removed",
    )
    push: bool = setting(
        False, t.BOOL, "push the kept image to its registry and report the digest", flag="--push",
        env=("MLFLOW_VALIDATOR_PUSH",),
    )  # fmt: skip


@dataclass(frozen=True)
class WriteBack:
    """What goes back to the registry when asked: version tags on the validated version, an alias when every stage
    ran and passed."""

    enabled: bool = setting(
        False,
        t.BOOL,
        "write the verdict to the registry as tags on the validated version (implied by --on-pass-set-alias)",
        flag="--write-back",
        env=("MLFLOW_VALIDATOR_WRITE_BACK",),
    )
    on_pass_set_alias: str | None = setting(
        None,
        t.TEXT,
        "set this alias on the validated version when every stage ran and passed",
        flag="--on-pass-set-alias",
        env=("MLFLOW_VALIDATOR_ON_PASS_SET_ALIAS",),
    )
    dry_run: bool = setting(
        False, t.BOOL, "say what would be written to the registry, write nothing", flag="--dry-run",
        env=("MLFLOW_VALIDATOR_DRY_RUN",),
    )  # fmt: skip
    report_url: str | None = setting(
        None,
        t.TEXT,
        "the link the mlflow_validator.report tag holds",
        flag="--report-url",
        env=("MLFLOW_VALIDATOR_REPORT_URL",),
        default_text="the CI job's URL (GitHub Actions, GitLab CI), else none",
    )


@dataclass(frozen=True)
class Options:
    model_uri: str
    config: Path | None = setting(
        None,
        t.PATH,
        "YAML config file",
        flag="--config",
        env=("MLFLOW_VALIDATOR_CONFIG",),
        in_config_file=False,
        default_text="`./mlflow-validator.yaml` if it exists",
    )
    stages: tuple[Stage, ...] = setting(
        SELECTABLE_STAGES,
        t.STAGES,
        "stages to run; naming docker makes a missing engine exit 2",
        flag="--stages",
        env=("MLFLOW_VALIDATOR_STAGES",),
    )
    platforms: tuple[str, ...] = setting(
        ("linux/amd64",),
        t.PLATFORMS,
        "the platforms the model must install on: the static stage resolves its requirements for each (linux/arm64: "
        "Graviton, images built on Apple silicon); the venv and docker stages run linux/amd64",
        flag="--platforms",
        env=("MLFLOW_VALIDATOR_PLATFORMS",),
    )
    tracking_uri: str | None = setting(
        None,
        t.TEXT,
        "MLflow tracking server",
        flag="--tracking-uri",
        env=("MLFLOW_TRACKING_URI",),
        default_text="MLflow's default",
    )
    registry_uri: str | None = setting(
        None,
        t.TEXT,
        "model registry, if not the tracking server",
        flag="--registry-uri",
        env=("MLFLOW_REGISTRY_URI",),
        default_text="the tracking URI",
    )
    output_dir: Path = setting(
        DEFAULT_DIR,
        t.PATH,
        "answers, lock, build log and the log file",
        flag="--output-dir",
        env=("MLFLOW_VALIDATOR_OUTPUT_DIR",),
    )
    junit_xml: Path | None = setting(
        None,
        t.PATH,
        "JUnit report path",
        flag="--junit-xml",
        env=("MLFLOW_VALIDATOR_JUNIT_XML",),
        default_text="`<output_dir>/junit.xml`",
    )
    constraints: Path | None = setting(
        None,
        t.PATH,
        "the serving runtime's installed packages (name==version lines)",
        flag="--constraints",
        env=("MLFLOW_VALIDATOR_CONSTRAINTS",),
    )
    baseline: str | None = setting(
        None,
        t.TEXT,
        "a model URI to compare answers with, e.g. models:/NAME@champion",
        flag="--baseline",
        env=("MLFLOW_VALIDATOR_BASELINE",),
    )
    checks: Mapping[str, Policy] = setting(
        {},
        t.policies_type(list(POLICY_CHECKS)),
        "`error`, `warn` or `off` per check (see the check table), and per team test file or node id "
        "(`test_rules.py`, `test_rules.py::test_sum`)",
        default_text="`error` but for `generated-inputs` (`warn`) and `sandbox` (`warn` unless `CI` is set)",
    )
    checks_dir: Path | None = setting(
        None,
        t.PATH,
        "a directory of pytest files: the team's own checks, run against the model in each stage",
        flag="--checks",
        env=("MLFLOW_VALIDATOR_CHECKS_DIR",),
    )
    keep: bool = setting(
        False,
        t.BOOL,
        "keep the work directory, image and container for debugging",
        flag="--keep",
        env=("MLFLOW_VALIDATOR_KEEP",),
    )
    quiet: bool = setting(
        False,
        t.BOOL,
        "print only the checks that did not pass or skip, and the verdict",
        flag="--quiet",
        env=("MLFLOW_VALIDATOR_QUIET",),
    )
    debug: bool = setting(
        False,
        t.BOOL,
        "log every command and print tracebacks",
        flag="--debug",
        env=("MLFLOW_VALIDATOR_DEBUG",),
        in_config_file=False,
    )
    tolerance: Tolerance = Tolerance()
    timeouts: Timeouts = Timeouts()
    build: BuildNetwork = BuildNetwork()
    requests: RequestSettings = RequestSettings()
    generated: GeneratedInputs = GeneratedInputs()
    budgets: Budgets = Budgets()
    env: ModelEnvironment = ModelEnvironment()
    pickles: PickleSettings = PickleSettings()
    sandbox: SandboxSettings = SandboxSettings()
    python: PythonSettings = PythonSettings()
    docker: DockerSettings = DockerSettings()
    write_back: WriteBack = WriteBack()
    # Not settings: worked out by the resolver from the settings above.
    model_env: Mapping[str, str] = field(default_factory=dict)  # env.pass resolved to the job's values, plus env.set
    egress: tuple[Destination, ...] = ()  # sandbox.egress with the job's variables expanded
    sources: Mapping[str, str] = field(default_factory=dict)  # setting key -> where its value came from

    @property
    def junit_path(self) -> Path:
        return self.junit_xml or self.output_dir / JUNIT_FILE

    def policy(self, check: str) -> Policy:
        return self.checks.get(check, Policy.ERROR)

    def team_policy(self, node_id: str) -> Policy:
        """A team test's policy: its node id's, else its file's, else error."""
        return self.checks.get(node_id, self.checks.get(node_id.split("::")[0], Policy.ERROR))

    def given(self, key: str) -> bool:
        """Whether the user set `key` (flag, environment or config file) rather than leaving the default."""
        return key in self.sources
