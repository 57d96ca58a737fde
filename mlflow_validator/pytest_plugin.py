"""The pytest plugin the team's checks run with (`pytest -p mlflow_validator.pytest_plugin`), in a process of their
own, once per stage: fixtures for the model under test in that stage, the `stages` marker, and each
test's outcome written where the validator reads it. What the plugin needs comes in a JSON file named by
MLFLOW_VALIDATOR_CHECKS_CONTEXT; the process sees nothing else of the validator's environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mlflow_validator.expectations.answers import Answer
from mlflow_validator.isolation import CONTEXT_VARIABLE
from mlflow_validator.serving.endpoint import Endpoint

PAYLOAD_KEYS = {"dataframe_split", "dataframe_records", "instances", "inputs"}
JSON = "application/json"


class ModelRefused(AssertionError):
    """The model answered something other than a 200; the status and MLflow's message are in the text."""

    def __init__(self, answer: Answer) -> None:
        decoded = answer.json()
        message = decoded.get("message", answer.body) if isinstance(decoded, dict) else answer.body
        super().__init__(f"the model answered {answer.status}: {str(message)[:500]}")
        self.answer = answer


def payload(data: Any, params: Mapping[str, Any] | None = None) -> str:
    """A scoring-server request body for what a test has at hand: a DataFrame, a dict of columns or a
    raw payload dict, a list of rows or records, a numpy array, or a payload already as JSON text."""
    if isinstance(data, (str, bytes)):
        return data.decode() if isinstance(data, bytes) else data
    if hasattr(data, "to_json") and hasattr(data, "columns"):  # a pandas DataFrame
        body: dict[str, Any] = {"dataframe_split": json.loads(data.to_json(orient="split", index=False))}
    elif isinstance(data, Mapping):
        body = dict(data) if set(data) & PAYLOAD_KEYS else {"inputs": dict(data)}
    elif hasattr(data, "tolist"):  # a numpy array
        body = {"inputs": data.tolist()}
    elif isinstance(data, list) and data and all(isinstance(row, Mapping) for row in data):
        body = {"dataframe_records": data}
    else:
        body = {"instances": list(data)}
    if params is not None:
        body["params"] = dict(params)
    return json.dumps(body, default=str)


@dataclass(frozen=True)
class ModelUnderTest:
    """The model as the current stage serves it: the caged venv process, or the container."""

    endpoint: Endpoint

    def invoke(self, body: str, content_type: str = JSON) -> Answer:
        """Status and body as the scoring server sent them (`.status`, `.body`, `.json()`)."""
        return self.endpoint.invoke(body, content_type)

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded answer (the `predictions`); ModelRefused unless the answer is a 200."""
        answer = self.invoke(payload(data, params))
        if answer.status != 200:
            raise ModelRefused(answer)
        decoded = answer.json()
        return decoded["predictions"] if isinstance(decoded, dict) and "predictions" in decoded else decoded


@dataclass(frozen=True)
class ModelInfo:
    uri: str
    name: str
    version: str
    run_id: str
    tags: Mapping[str, str] = field(default_factory=dict)


@cache  # read once per pytest process: every test and fixture asks for it
def _context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(Path(os.environ[CONTEXT_VARIABLE]).read_text())
    return context


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stages(*names): run this test only in these stages (venv, docker)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stage = _context()["stage"]
    for item in items:
        marker = item.get_closest_marker("stages")
        if marker is not None and stage not in marker.args:
            item.add_marker(pytest.mark.skip(reason=f"only in the {', '.join(marker.args)} stage"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The tests that will run: the validator counts the results against them (a session cut short is no pass)."""
    _record({"collected": [item.nodeid for item in session.items]})


def _record(entry: dict[str, Any]) -> None:
    with open(_context()["results"], "a", encoding="utf-8") as results:
        results.write(json.dumps(entry) + "\n")


def _message(report: pytest.CollectReport | pytest.TestReport) -> str:
    """pytest's one-line reason: the assertion's message, the skip's reason, a collection error's last line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        text = str(report.longrepr[2]).removeprefix("Skipped: ")
    elif crash is not None:
        text = str(crash.message)
    else:
        lines = report.longreprtext.strip().splitlines()
        text = lines[-1].removeprefix("E").strip() if lines else ""
    return " ".join(text.split())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One entry per test: its call's outcome, or its setup's when that failed or skipped."""
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        _record(
            {
                "node_id": report.nodeid,
                "outcome": outcome,
                "seconds": report.duration,
                "message": "" if report.passed else _message(report),
                "details": report.longreprtext if report.failed else "",
            }
        )


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A file that cannot be collected (a syntax error, a failed import) is an error of its own."""
    if report.failed:
        _record(
            {
                "node_id": report.nodeid,
                "outcome": "error",
                "seconds": 0.0,
                "message": _message(report),
                "details": report.longreprtext,
            }
        )


def _model(address: str | None) -> ModelUnderTest | None:
    return ModelUnderTest(Endpoint(address, float(_context()["timeout_s"]))) if address else None


@pytest.fixture(scope="session")
def model() -> ModelUnderTest:
    found = _model(_context()["endpoint"])
    assert found is not None
    return found


@pytest.fixture(scope="session")
def baseline() -> ModelUnderTest:
    found = _model(_context().get("baseline"))
    if found is None:
        pytest.skip("no baseline here: give --baseline (it answers in the venv stage)")
    return found


@pytest.fixture(scope="session")
def stage() -> str:
    return str(_context()["stage"])


@pytest.fixture(scope="session")
def model_info() -> ModelInfo:
    return ModelInfo(**_context()["model_info"])


@pytest.fixture(scope="session")
def signature() -> Any:
    """MLflow's ModelSignature, or None when the model logs none."""
    from mlflow.models import Model

    return Model.load(_context()["model_dir"]).signature


@pytest.fixture(scope="session")
def input_example() -> Any:
    """The logged input example as MLflow loads it (a DataFrame, a dict, an array), or None."""
    from mlflow.models import Model

    directory = _context()["model_dir"]
    return Model.load(directory).load_input_example(directory)
