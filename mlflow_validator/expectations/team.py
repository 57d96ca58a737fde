"""The team's own checks: ordinary pytest files, run with the validator's plugin (`mlflow_validator/pytest_plugin.py`)
in a process of their own, once per stage, against the model as that stage serves it. Each test becomes
a result named by its node id, with pytest's message; the config file's policies apply per file or node id.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_validator import commands
from mlflow_validator.checks import Policy
from mlflow_validator.isolation import checks_process_env
from mlflow_validator.results import CheckResult, ModelIdentity, Outcome, Stage, Status, skipped
from mlflow_validator.settings import Options
from mlflow_validator.stages.context import RunContext

# pytest's exit codes that say the tests ran (some may have failed) or that there were none.
RAN, TESTS_FAILED, NO_TESTS = 0, 1, 5
STATUSES = {"passed": Status.PASSED, "failed": Status.FAILED, "skipped": Status.SKIPPED, "error": Status.ERROR}
SEVERITY = [Status.ERROR, Status.FAILED, Status.WARNED, Status.PASSED, Status.SKIPPED]


@dataclass(frozen=True)
class ChecksContext:
    """What the plugin is told: where the model is asked, and what it is."""

    stage: Stage
    endpoint: str
    baseline: str | None
    model_dir: Path
    identity: ModelIdentity
    tags: Mapping[str, str]
    timeout_s: float

    @classmethod
    def of(cls, run: RunContext, stage: Stage, endpoint: str, baseline: str | None = None) -> ChecksContext:
        model, timeout = run.model, run.options.timeouts.request
        return cls(stage, endpoint, baseline, model.directory, model.identity, model.tags, timeout)

    def as_json(self, results: Path) -> str:
        identity = self.identity
        info = {"uri": identity.uri, "name": identity.name, "version": identity.version, "run_id": identity.run_id}
        return json.dumps(
            {
                "stage": self.stage.value,
                "endpoint": self.endpoint,
                "baseline": self.baseline,
                "model_dir": str(self.model_dir),
                "model_info": info | {"tags": dict(self.tags)},
                "timeout_s": self.timeout_s,
                "results": str(results),
            }
        )


def _turned_off(options: Options, directory: Path) -> list[str]:
    """pytest arguments leaving out the files and tests whose policy is `off`."""
    arguments = []
    for key, policy in options.checks.items():
        if policy is Policy.OFF and ".py" in key:
            arguments += ["--deselect", key] if "::" in key else ["--ignore", str(directory / key)]
    return arguments


def _result(entry: Mapping[str, Any], stage: Stage, options: Options) -> CheckResult:
    status = STATUSES.get(str(entry["outcome"]), Status.ERROR)
    if status is Status.FAILED and options.team_policy(entry["node_id"]) is Policy.WARN:
        status = Status.WARNED
    return CheckResult(stage, entry["node_id"], status, float(entry["seconds"]), entry["message"], entry["details"])


def run_team_checks(context: ChecksContext, options: Options, env: Mapping[str, str], workdir: Path) -> Outcome:
    """Every test of the directory, each a case of the returned outcome (its status: the worst of them)."""
    directory = options.checks_dir
    assert directory is not None
    directory = directory.absolute()
    home, results, context_file = workdir / "home", workdir / "results.jsonl", workdir / "context.json"
    home.mkdir(parents=True, exist_ok=True)
    context_file.write_text(context.as_json(results))
    # -s: no user site-packages, so no .pth file of the user's runs first.
    argv = [sys.executable, "-s", "-m", "pytest", str(directory), "-p", "mlflow_validator.pytest_plugin"]
    argv += ["-p", "no:cacheprovider"]
    # The directory is its own project: the repository's pytest configuration and conftest files stay out.
    argv += ["--rootdir", str(directory), "--confcutdir", str(directory), "-c", os.devnull, "-vv", "-rN"]
    argv += ["--continue-on-collection-errors", *_turned_off(options, directory)]
    done = commands.run(
        argv,
        env=checks_process_env(env, home=home, context=context_file),
        cwd=directory,
        timeout_s=options.timeouts.checks,
        check=False,
    )
    lines = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    entries = [line for line in lines if "node_id" in line]
    collected = next((line["collected"] for line in lines if "collected" in line), None)
    if done.returncode == NO_TESTS and not entries:
        return skipped(f"no tests in {directory}")
    # Any other way out (pytest stopped before a test or during one, a crash, a plugin that did not import) leaves
    # tests not run: the checks cannot vouch for the model, whatever those that ran said.
    cases = tuple(_result(entry, context.stage, options) for entry in entries)
    not_run = set(collected or ()) - {entry["node_id"] for entry in entries}
    if done.returncode not in (RAN, TESTS_FAILED) or collected is None or not_run:
        why = f"{len(not_run)} of {len(collected)} tests did not run" if collected and not_run else "it stopped"
        message = (
            f"pytest could not run the checks in {directory} (exit {done.returncode}; {why}): "
            f"{commands.last_line(done.output)}"
        )
        stopped = CheckResult(context.stage, "team-checks", Status.ERROR, 0.0, message, done.tail())
        return Outcome(Status.ERROR, message, done.tail(), cases=(*cases, stopped))
    worst = min((case.status for case in cases), key=SEVERITY.index, default=Status.SKIPPED)
    return Outcome(worst, cases=cases)


EXAMPLE_FILE = "test_model.py"
EXAMPLE_HEAD = '''\
"""The team's own checks for {uri}: ordinary pytest tests that mlflow-validator runs against the model
in each stage it validates: the caged model process of the venv stage, then the serving container.

    mlflow-validator validate {uri} --checks {directory}

Fixtures: `model` (the model in the current stage: `model.predict(data, params=None)` takes a DataFrame,
a dict, a list or an array and returns the decoded predictions; `model.invoke(body, content_type)`
returns `.status` and `.body` as the scoring server sent them), `stage` ("venv" or "docker"),
`signature` and `input_example` (as MLflow loads them), `model_info` (uri, name, version, run_id, tags)
and `baseline` (the model given to --baseline; the test is skipped without one).
Each test is a result in the report, named by its node id; `checks: {{"{file}::test_name": warn}}` in
mlflow-validator.yaml makes one warn instead of failing the gate.
"""

import json

import pytest


def test_the_example_is_answered_row_for_row(model, input_example):
    predictions = model.predict(input_example)
    assert len(predictions) == len(input_example)


def test_answers_are_the_same_for_the_same_input(model, input_example):
    assert model.predict(input_example) == model.predict(input_example)


@pytest.mark.stages("docker")
def test_the_container_serves_the_version_under_validation(model, stage, model_info):
    assert stage == "docker"
    answer = model.invoke(json.dumps({{"dataframe_split": {{"columns": [], "data": []}}}}))
    assert answer.status < 500, f"{{model_info.uri}} answered {{answer.status}}: {{answer.body}}"


def test_the_new_version_answers_the_example_like_the_baseline(model, baseline, input_example):
    assert len(model.predict(input_example)) == len(baseline.predict(input_example))
'''
MISSING_COLUMN_TEST = """

def test_a_request_without_a_required_column_is_refused_not_a_crash(model, signature):
    first = signature.inputs.input_names()[0]
    rest = [name for name in signature.inputs.input_names() if name != first]
    answer = model.invoke(json.dumps({{"dataframe_split": {{"columns": rest, "data": [[None] * len(rest)]}}}}))
    assert 400 <= answer.status < 500, answer.body
"""


def example_checks(uri: str, directory: Path, signature_inputs: tuple[Mapping[str, Any], ...]) -> str:
    """A commented test file using every fixture, written to pass against the model at hand."""
    text = EXAMPLE_HEAD.format(uri=uri, directory=directory, file=EXAMPLE_FILE)
    columns = [spec for spec in signature_inputs if spec.get("type") != "tensor" and spec.get("name")]
    if len(columns) >= 2 and columns[0].get("required", True):
        text += MISSING_COLUMN_TEST.format()
    return text
