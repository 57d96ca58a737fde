"""The MLflow versions mlflow-validator runs with. The validator imports MLflow's internals (the scoring
server's parsing, schema enforcement, the Dockerfile generator, the artifact repositories), so the range
pyproject.toml declares is tested at both ends: the newest by the test command's own environment, which
runs every test, and the oldest here, in a fresh environment, for the static and venv stages and MLflow
3's model URIs. The floor is 3.5: the first MLflow whose artifact repositories take the tracking and
registry URIs per call (3.2 and 3.5), which the validator passes rather than set MLflow's global state.
The test command runs it (`python -m nox`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

PYPROJECT = Path(__file__).with_name("pyproject.toml")
OLDEST_MLFLOW = re.search(r'"mlflow>=([\d.]+)"', PYPROJECT.read_text()).group(1)  # type: ignore[union-attr]
RANGE_TESTS = [
    "tests/unit",
    "tests/integration/test_static_checks.py::test_clean_sklearn_model_raises_no_alarm_and_writes_a_lock",
    "tests/integration/test_static_checks.py::test_unresolvable_requirement_is_rejected_in_seconds",
    "tests/integration/test_model_uris.py",
    "tests/integration/test_inference.py::test_data_frame_model_answers_every_payload_format_and_rejects_invalid_input",
]


@nox.session(python="3.11")
def oldest_mlflow(session: nox.Session) -> None:
    """The docker stage left out: its image installs the run's lock, whatever MLflow the validator has."""
    session.install("-e", ".[test]", f"mlflow=={OLDEST_MLFLOW}")
    session.run("python", "-c", "import mlflow; print('MLflow', mlflow.__version__)")
    # The tests' tracking server runs with the test command's MLflow, as a registry runs apart from its clients
    # (and an old MLflow's server may not start with today's SQLAlchemy: 3.0.0's imports a pool 2.1 removed).
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-m", "not docker", *RANGE_TESTS, *session.posargs,
        env={"TEST_MLFLOW_SERVER_PYTHON": sys.executable},
    )  # fmt: skip
