"""Every check the validator runs, in report order: the one list the stages' steps, the policies in
the config file and the docs' check table are derived from."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mlflow_validator.results import Stage


class Policy(str, enum.Enum):
    ERROR = "error"  # fails the gate (the default)
    WARN = "warn"  # reported, does not fail the gate
    OFF = "off"  # not run


@dataclass(frozen=True)
class Check:
    stage: Stage
    name: str
    fails_when: str  # the docs' wording; "(exit 2)" where the validator, not the model, is stopped
    # Earlier checks of the stage that must have passed; None means every earlier one.
    requires: tuple[str, ...] | None = None
    has_policy: bool = False  # `checks: {name: error|warn|off}` applies


STATIC, VENV, DOCKER, MLSERVER = Stage.STATIC, Stage.VENV, Stage.DOCKER, Stage.MLSERVER
AFTER_VENV_ANSWERS = ("load-model",)
AFTER_CONTAINER_ANSWERS = ("answers",)
# Runs when no earlier check of its stage failed (the stage itself runs only when no earlier stage failed).
GATE_SO_FAR = ("no earlier check failed",)

CHECKS = (
    Check(STATIC, "mlmodel", "MLmodel is missing, not YAML, or has no flavors", requires=()),
    Check(
        STATIC,
        "pyfunc-flavor",
        "no `python_function` flavor, so no scoring server can serve the model",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "integrity",
        "a file MLmodel or a flavor references (`model_path`, `pickled_model`, `data`, `code`, env files, "
        "PythonModel artifacts) is not in the model, or a downloaded file is smaller than the store lists it, "
        "or unreadable",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "environment-files",
        "`python_env.yaml` or `requirements.txt` is missing, not YAML, or names no Python version",
        requires=("pyfunc-flavor",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "environment-agreement",
        "`python_env.yaml`, `conda.yaml` and MLmodel name different Python versions; `requirements.txt` and "
        "`conda.yaml` pin differently, or `conda.yaml` is not YAML; the requirements install another MLflow major "
        "version than the model was logged with",
        requires=("environment-files",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "resolvable",
        "uv cannot resolve the requirements for the model's Python on `x86_64-manylinux_2_36` (the slim images' "
        "platform), whatever machine runs the validator; uv's explanation and the repair command are in the "
        "message. A requirement line uv is not given (one that would read a file outside the model, expand a "
        "variable, or need building: see the threat model's allow-list) fails it too, named. The full resolution, "
        "every transitive pin, is written to `requirements.lock.txt` next to the "
        "report",
        requires=("environment-files",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "platforms",
        "with `platforms` naming another platform than linux/amd64 (`linux/arm64`: Graviton, images built on Apple "
        "silicon), the lock's pins do not resolve there (`aarch64-manylinux_2_36`, the requirements within the "
        "lock's versions): a pinned version has no wheel for it. The message names the "
        "platform and what to pin",
        requires=("resolvable",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "runtime-constraints",
        "with `--constraints FILE` (the serving runtime's installed packages): no resolution satisfies both; the "
        "message names each package, e.g. \"the model's lock needs scikit-learn 1.9.1, the target runtime has "
        '1.5.2". The venv and docker stages then install within the same constraints (`uv pip install -c`, '
        "`PIP_CONSTRAINT` in the build)",
        requires=("resolvable",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "pinned",
        "a direct requirement is not pinned with `==` (the fix pins it to the version just resolved); requirements "
        "on VCS URLs, URLs, local paths or other indexes are listed with what they need at build time",
        requires=("environment-files",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "uv-lock",
        "the model carries `uv.lock` and `pyproject.toml` and `uv export --frozen --no-dev --no-hashes` disagrees "
        "with `requirements.txt`. For such models the venv stage installs from the lock",
        requires=("environment-files",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "unsafe-pickle",
        "a pickle is `unsafe`: loading it runs a known way to execute code (commands, `eval`/`exec`, a loader of "
        "an inner pickle such as `numpy.load` or `pandas.read_pickle`, carried code that runs at load: a "
        "finaliser, a carried metaclass), named with its literal arguments. An `unverified` pickle passes and says "
        "so: it names or calls something outside the allow-list (what numpy, pandas, scipy, scikit-learn, "
        "LightGBM, pyarrow and the standard library's values are rebuilt with; cloudpickle's machinery; a "
        "library's classes and functions held without being called; the modules `pickles.trusted` names), carries "
        "class hooks that may run while it loads, or could not be read to its end; it is then loaded only in the "
        "cage. Pickles are found by content as well as by name (protocols 0 to 5, with or without PROTO; "
        "joblib's compressed files; object arrays in `.npy` and `.npz`) and read as opcodes "
        "([fickling](https://github.com/trailofbits/fickling) decompiles them), never loaded. For skops files, "
        "the untrusted types skops reports are listed",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "code-imports",
        "an import in `code/`, in a models-from-code file or in pickled code resolves to neither logged code, the "
        "standard library, "
        "nor a distribution in the resolution; `from src.utils import f` with `utils.py` logged flattened at the "
        'top of `code/` gets "log `code_paths=["src"]`". Imports guarded by `except ImportError` are optional',
        requires=("resolvable",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "pickle-compatibility",
        "a pickle references numpy 2 internals (`numpy._core`) while the requirements install numpy 1, or MLmodel's "
        "`cloudpickle_version` has another major version than the pinned cloudpickle",
        requires=("resolvable",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "environment-variables",
        "the pickled code reads an environment variable (`os.environ[...]`, `os.getenv`) that `env.pass`/`env.set` "
        "do not declare; the message gives the declaration",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "absolute-paths",
        "the pickled code uses an absolute path of the machine it was logged on (`/home/alice/data.csv`)",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "secrets",
        "[detect-secrets](https://github.com/Yelp/detect-secrets) finds a credential in logged code or text "
        "artifacts; the report gives file, line and kind, never the value (its high-entropy detectors are off: "
        "examples and MLmodel ids would set them off)",
        requires=(),
        has_policy=True,
    ),
    Check(STATIC, "signature", "no input signature is logged", requires=("mlmodel",), has_policy=True),
    Check(
        STATIC,
        "input-example",
        "no input example is logged, or its serving file is missing",
        requires=("mlmodel",),
        has_policy=True,
    ),
    Check(
        STATIC,
        "example-matches-signature",
        "the serving example, parsed as the scoring server parses it, fails MLflow's own schema enforcement",
        requires=("signature", "input-example"),
        has_policy=True,
    ),
    Check(
        VENV,
        "interpreter",
        "(exit 2) no interpreter of the model's minor Python version on the machine; another patch release is "
        "used and said so",
    ),
    Check(VENV, "create-virtualenv", "(exit 2) uv cannot create the virtualenv"),
    Check(
        VENV,
        "install-requirements",
        "uv cannot install the requirements (uv's explanation and the repair command are in the message)",
    ),
    Check(
        VENV,
        "sandbox",
        "the model process cannot be caged here: neither bubblewrap (missing, user namespaces refused, root "
        "without capabilities) nor a container on the Docker engine (none reachable, no BuildKit, the cage's "
        "image cannot be built); the message says what to enable for each. When it passes, it says which "
        "backend caged the model and what that backend guarantees. With the policy `error` (the default where "
        "`CI` is set) the run cannot validate (exit 2) and the model is not loaded; with `warn` (the default "
        "elsewhere) or `off` it runs uncaged",
        requires=(),
        has_policy=True,
    ),
    Check(
        VENV,
        "load-model",
        "the model cannot be loaded, or reads an environment variable nobody declared (the message names it and "
        "says how to declare it), or reaches for the network or a host path the cage hides (named, with how to make "
        "the model self-contained)",
        requires=("install-requirements",),
    ),
    Check(
        VENV,
        "answers",
        "a request that calls for an answer gets anything but a 200: the model raises (MLflow's message and the "
        "last line of the stack trace), or its answer cannot be turned into JSON (the value's type is named). "
        "MLflow refusing a *derived* payload format for this model is a warning",
        requires=AFTER_VENV_ANSWERS,
    ),
    Check(
        VENV,
        "rejects-invalid-input",
        "a request the signature forbids (a required column missing, text in a numeric column) is not answered "
        "with a 4xx and MLflow's error JSON",
        requires=AFTER_VENV_ANSWERS,
        has_policy=True,
    ),
    Check(
        VENV,
        "deterministic",
        'a request answered twice gets two different answers: "non-deterministic output" (a seeded model passes)',
        requires=AFTER_VENV_ANSWERS,
        has_policy=True,
    ),
    Check(
        VENV,
        "output-contract",
        "an answer does not conform to the output signature: types, column names, shape. MLflow does not check outputs",
        requires=AFTER_VENV_ANSWERS,
        has_policy=True,
    ),
    Check(
        VENV,
        "expected-responses",
        "an answer differs from the `NAME.expected.json` next to a request file",
        requires=AFTER_VENV_ANSWERS,
    ),
    Check(
        VENV,
        "timing",
        "a budget is set and exceeded: `max_load_seconds`, or `max_latency_ms` at p95. Without budgets the figures "
        "are reported and the check passes",
        requires=AFTER_VENV_ANSWERS,
    ),
    Check(
        VENV,
        "generated-inputs",
        "an input built from the input signature (Hypothesis: `generated.examples` of them with `generated.seed`, "
        "and each type's extremes) makes the model raise, answer 5xx, hang or die, or answer something the output "
        "signature forbids; a 4xx from MLflow's schema enforcement or a deliberate MlflowException is a legitimate "
        "refusal. The smallest failing input is saved as a request file. Policy `warn` unless set; the inputs "
        "answered 200 are asked again in the docker stage and compared (matches-venv)",
        requires=AFTER_VENV_ANSWERS,
        has_policy=True,
    ),
    Check(
        VENV,
        "changed-vs-baseline",
        "(only with `--baseline`) more than `max_changed_fraction` of the values changed; (exit 2) the baseline "
        "itself cannot answer",
        requires=AFTER_VENV_ANSWERS,
    ),
    Check(
        VENV,
        "team-checks",
        "(only with `--checks DIR`) a test of the team's fails (pytest's assertion message), or cannot run (a "
        "syntax error: exit 2): each test is a result of its own, named by its node id",
        requires=AFTER_VENV_ANSWERS,
    ),
    Check(
        VENV,
        "egress",
        "(only with `sandbox.egress`) the model reached for a destination the list does not declare (named, with "
        "the line to add), or a declared name resolves to a loopback, link-local, cloud-metadata, unspecified, "
        "multicast or reserved address; or, with `budgets.max_upstream_calls`, it made more upstream calls than "
        "that per prediction. The connections are listed with their calls, bytes and time (the first 50; the "
        "totals count all); a declared destination that cannot be reached is exit 2",
        requires=("install-requirements",),
        has_policy=True,
    ),
    Check(DOCKER, "generate-dockerfile", "(exit 2) MLflow's generator fails"),
    Check(
        DOCKER,
        "build-image",
        "`docker build` fails (the full log is `docker-build.log`); (exit 2) the lock's wheels cannot be downloaded",
    ),
    Check(
        DOCKER,
        "start-container",
        "the container exits (an undeclared variable is named), is killed for memory (`docker.memory`), its scoring "
        "workers keep dying for 20 s while nginx answers 502, or `/ping` does not answer 200 within "
        "`budgets.max_load_seconds` (else `timeouts.container_start`)",
    ),
    Check(
        DOCKER,
        "package-parity",
        "the image's installed distributions differ from the venv's (both install the run's lock), named",
        requires=("start-container",),
        has_policy=True,
    ),
    Check(
        DOCKER,
        "answers",
        "as in the venv stage, through HTTP; a request that hangs past `timeouts.request` or finds the server dead "
        "fails, with the container's log",
        requires=("start-container",),
    ),
    Check(
        DOCKER,
        "rejects-invalid-input",
        "as in the venv stage, for the container's answers",
        requires=AFTER_CONTAINER_ANSWERS,
        has_policy=True,
    ),
    Check(
        DOCKER,
        "output-contract",
        "as in the venv stage, for the container's answers",
        requires=AFTER_CONTAINER_ANSWERS,
        has_policy=True,
    ),
    Check(
        DOCKER,
        "matches-venv",
        "the container answers a request with another status or other values than the fresh virtualenv did",
        requires=AFTER_CONTAINER_ANSWERS,
        has_policy=True,
    ),
    Check(
        DOCKER,
        "expected-responses",
        "as in the venv stage, for the container's answers",
        requires=AFTER_CONTAINER_ANSWERS,
    ),
    Check(DOCKER, "timing", "as in the venv stage, for the container's answers", requires=AFTER_CONTAINER_ANSWERS),
    Check(DOCKER, "team-checks", "as in the venv stage, against the container", requires=("start-container",)),
    Check(
        DOCKER,
        "egress",
        "as in the venv stage, for the serving container (which has no network: its only way out is the same proxy); "
        "the calls are counted per request",
        requires=("build-image",),
        has_policy=True,
    ),
    Check(
        DOCKER,
        "keep-image",
        "(only with `--image-tag`, when nothing failed) (exit 2) the engine refuses the tag, or the registry the push",
        requires=GATE_SO_FAR,
    ),
    Check(MLSERVER, "generate-dockerfile", "(exit 2) MLflow's generator fails"),
    Check(
        MLSERVER,
        "build-image",
        "MLServer (1.7.1, with `mlserver-mlflow`) cannot be installed with the model's requirements (uv's "
        "explanation), or `docker build` fails (`mlserver-build.log`)",
    ),
    Check(
        MLSERVER,
        "start-container",
        "as in the docker stage, waiting for `/v2/models/mlflow-model/ready`: MLServer goes on running without the "
        "model, so a model it keeps failing to load for 20 s fails with MLServer's own error",
    ),
    Check(
        MLSERVER,
        "package-parity",
        "a distribution the model requires itself is at another version than in the venv, or anything else "
        "differs but what MLServer installed; what MLServer adds and changes is named",
        requires=("start-container",),
        has_policy=True,
    ),
    Check(
        MLSERVER,
        "answers",
        "as in the docker stage, each request asked in KServe's V2 protocol (`/v2/models/mlflow-model/infer`) "
        "and its answer read back as the scoring server's: what MLServer cannot take or answer fails with its "
        "own error text",
        requires=("start-container",),
    ),
    Check(
        MLSERVER,
        "rejects-invalid-input",
        "as in the venv stage; MLServer's 500 around MLflow's MlflowException counts as MLflow's refusal",
        requires=AFTER_CONTAINER_ANSWERS,
        has_policy=True,
    ),
    Check(MLSERVER, "output-contract", "as in the venv stage", requires=AFTER_CONTAINER_ANSWERS, has_policy=True),
    Check(
        MLSERVER,
        "matches-venv",
        "MLServer answers a request with another status or other values than the fresh virtualenv did",
        requires=AFTER_CONTAINER_ANSWERS,
        has_policy=True,
    ),
    Check(MLSERVER, "expected-responses", "as in the venv stage", requires=AFTER_CONTAINER_ANSWERS),
    Check(MLSERVER, "timing", "as in the venv stage", requires=AFTER_CONTAINER_ANSWERS),
    Check(MLSERVER, "egress", "as in the docker stage", requires=("build-image",), has_policy=True),
)


def checks_of(stage: Stage) -> list[Check]:
    return [check for check in CHECKS if check.stage is stage]


# The checks a policy can be set for, each named once, in report order.
POLICY_CHECKS = tuple(dict.fromkeys(check.name for check in CHECKS if check.has_policy))
