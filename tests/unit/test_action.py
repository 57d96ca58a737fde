"""The Action's entry point and files: inputs to command lines, the step's outputs against a recorded
GITHUB_OUTPUT, and action.yml and the workflows against GitHub's published schemas."""

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml
from ruamel.yaml import YAML

from mlflow_validator.batch.action import (
    OWN_INPUTS,
    SELECTION_INPUTS,
    SETTING_INPUTS,
    command_line,
    read_inputs,
    result_records,
    step_outputs,
)
from mlflow_validator.reporters.record import to_json
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport

ROOT = Path(__file__).parents[2]
SCHEMAS = files("check_jsonschema") / "builtin_schemas" / "vendor"


def test_inputs_become_one_command_line_with_empty_inputs_left_out():
    env = {
        "INPUT_MODEL_URI": "models:/churn/3\nmodels:/fraud@candidate",
        "INPUT_STAGES": "static,venv",
        "INPUT_BASELINE": "",
        "INPUT_PUSH": "false",
        "INPUT_DRY_RUN": "true",
        "GITHUB_TOKEN": "not an input",
    }
    assert command_line(read_inputs(env)) == [
        "validate", "models:/churn/3", "models:/fraud@candidate", "--output-dir", "mlflow-validator-report",
        "--stages", "static,venv", "--dry-run",
    ]  # fmt: skip


def test_a_manifest_input_validates_its_changed_entries():
    inputs = {"manifest": "mlflow-models.yaml", "base": "origin/main", "jobs": "2", "report-dir": "out"}
    assert command_line(inputs) == [
        "validate", "--output-dir", "out", "--manifest", "mlflow-models.yaml", "--base", "origin/main", "--jobs", "2",
    ]  # fmt: skip


def recorded_run(directory: Path, stages: tuple[Stage, ...]) -> None:
    """report.json of a run whose checks passed in `stages`; the other stages not selected."""
    checks = [
        CheckResult(stage, "answers", Status.PASSED, 0.1)
        if stage in stages
        else CheckResult(stage, stage.value, Status.SKIPPED, 0.0, "not selected")
        for stage in Stage
    ]
    (directory / "report.json").write_text(to_json(ValidationReport(ModelIdentity("models:/a/1", "a", "1"), checks)))


@pytest.mark.parametrize(("stages", "verdict"), [(tuple(Stage), "passed"), ((Stage.STATIC,), "partial")])
def test_one_models_outputs_come_from_its_report(tmp_path, stages, verdict):
    (tmp_path / "image.json").write_text(json.dumps({"digest": "reg/a@sha256:1"}))
    recorded_run(tmp_path, stages)
    inputs = {"model-uri": "models:/a/1", "report-dir": str(tmp_path)}
    lines = step_outputs(result_records(inputs, 0), 0, str(tmp_path)).splitlines()
    assert lines[:5] == [
        f"verdict={verdict}",
        "exit-code=0",
        f"junit-xml={tmp_path / 'junit.xml'}",
        f"report-dir={tmp_path}",
        "image-digest=reg/a@sha256:1",
    ]


def test_several_models_outputs_carry_the_worst_verdict_and_each_models_record(tmp_path):
    records = [
        {"id": "prod/a", "model-uri": "models:/a/1", "verdict": "passed", "exit-code": 0},
        {"id": "prod/b", "model-uri": "models:/b/1", "verdict": "failed", "exit-code": 1},
    ]
    (tmp_path / "results.json").write_text(json.dumps(records))
    inputs = {"manifest": "mlflow-models.yaml", "report-dir": str(tmp_path)}
    lines = step_outputs(result_records(inputs, 1), 1, str(tmp_path)).splitlines()
    assert lines[:3] == ["verdict=failed", "exit-code=1", f"junit-xml={tmp_path / 'junit.xml'}"]
    results = json.loads(next(line for line in lines if line.startswith("results=")).removeprefix("results="))
    assert results == records


@pytest.mark.parametrize(
    ("path", "schema"),
    [(ROOT / "action.yml", "github-actions.json")]
    + [(workflow, "github-workflows.json") for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yml"))],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_action_and_workflows_fit_githubs_schemas(path, schema):
    # YAML 1.2, as GitHub reads it: `on:` is a key, not the boolean PyYAML's YAML 1.1 makes of it.
    document = YAML(typ="safe").load(path.read_text())
    jsonschema.validate(document, json.loads((SCHEMAS / schema).read_text()))


def test_every_input_of_action_yml_reaches_the_entry_point():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    passed = next(step for step in action["runs"]["steps"] if step.get("id") == "validate")["env"]
    assert {f"INPUT_{name.upper().replace('-', '_')}" for name in action["inputs"]} == set(passed) - {"PYTHONSAFEPATH"}


def test_every_input_of_action_yml_is_a_setting_a_selection_or_the_actions_own():
    inputs = set(yaml.safe_load((ROOT / "action.yml").read_text())["inputs"])
    assert inputs - set(SETTING_INPUTS) - set(SELECTION_INPUTS) - OWN_INPUTS == set()


def test_other_flags_pass_through_args_and_settings_inputs_become_their_flags():
    inputs = {"model-uri": "models:/churn/3", "memory": "2g", "write-back": "true", "push": "false"}
    assert command_line(inputs | {"args": "--rtol 1e-4 --keep"}) == [
        "validate", "models:/churn/3", "--output-dir", "mlflow-validator-report", "--memory", "2g", "--write-back",
        "--rtol", "1e-4", "--keep",
    ]  # fmt: skip


def test_every_variable_the_component_sets_is_a_settings_own():
    """The component passes its inputs as the settings' environment variables, as the settings declare them."""
    from mlflow_validator.settings.declared import SETTINGS

    declared = {name for setting in SETTINGS for name in setting.declaration.env}
    text = (ROOT / "templates" / "validate.yml").read_text()
    used = set(re.findall(r"^\s+(MLFLOW_VALIDATOR_[A-Z_]+):", text, re.MULTILINE))
    assert used and used <= declared


def test_the_lock_the_action_and_the_image_install_holds_every_runtime_dependency():
    """Both install requirements.lock with --no-deps (pip --require-hashes): a dependency added to
    pyproject.toml but not locked is missing where users run the validator."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    assert {canonicalize_name(Requirement(line).name) for line in declared} - locked == set()


def test_third_party_actions_are_pinned_by_commit_with_their_version_named():
    files = [ROOT / "action.yml", *sorted((ROOT / ".github" / "workflows").glob("*.yml"))]
    lines = [line.strip() for f in files for line in f.read_text().splitlines()]
    uses = [line.split("uses:", 1)[1].strip() for line in lines if "uses:" in line and not line.startswith("#")]
    third_party = [use for use in uses if not use.startswith(("./", "`"))]
    assert third_party and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v[\d.]+", use) for use in third_party)
