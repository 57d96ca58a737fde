"""The Action's entry point and files: inputs to command lines, the step's outputs against a recorded
GITHUB_OUTPUT, and action.yml and the workflows against GitHub's published schemas."""

import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml
from ruamel.yaml import YAML

from validator.action import Validation, planned_validations, read_inputs, result_record, step_outputs

ROOT = Path(__file__).parents[2]
SCHEMAS = files("check_jsonschema") / "builtin_schemas" / "vendor"


def test_inputs_become_one_command_line_per_model_with_empty_inputs_left_out():
    env = {
        "INPUT_MODEL_URI": "models:/churn/3\nmodels:/fraud@candidate",
        "INPUT_STAGES": "static,venv",
        "INPUT_BASELINE": "",
        "INPUT_PUSH": "false",
        "INPUT_DRY_RUN": "true",
        "GITHUB_TOKEN": "not an input",
    }
    churn, fraud = planned_validations(read_inputs(env))
    assert churn.argv == [
        "validate", "models:/churn/3", "--output-dir", "mlflow-validator-report/models-churn-3",
        "--stages", "static,venv", "--dry-run",
    ]  # fmt: skip
    assert fraud.output_dir == Path("mlflow-validator-report/models-fraud-candidate")


def test_one_model_reports_into_the_report_dir_itself():
    (only,) = planned_validations({"model-uri": "models:/churn/3", "report-dir": "out"})
    assert only.output_dir == Path("out")


def test_the_outputs_carry_the_worst_verdict_and_each_models_record(tmp_path):
    passed = Validation("models:/a/1", tmp_path / "a", [])
    failed = Validation("models:/b/1", tmp_path / "b", [])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "image.json").write_text(json.dumps({"digest": "reg/a@sha256:1"}))
    lines = step_outputs([result_record(passed, 0), result_record(failed, 1)], "out").splitlines()
    assert lines[:2] == ["verdict=failed", "exit-code=1"]
    results = json.loads(next(line for line in lines if line.startswith("results=")).removeprefix("results="))
    assert [(r["model-uri"], r["verdict"], r["image-digest"]) for r in results] == [
        ("models:/a/1", "passed", "reg/a@sha256:1"),
        ("models:/b/1", "failed", ""),
    ]


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
    passed = action["runs"]["steps"][1]["env"]
    assert {f"INPUT_{name.upper().replace('-', '_')}" for name in action["inputs"]} == set(passed)
