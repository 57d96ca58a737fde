"""The README's CI jobs are copy-paste ready: each fits its platform's published schema (check-jsonschema's
vendored copies) and passes only inputs the Action or the component declares."""

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parents[2]
SCHEMAS = files("check_jsonschema") / "builtin_schemas" / "vendor"
README_YAML = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def readme_block(marker: str) -> dict:
    (block,) = [block for block in README_YAML if marker in block]
    return yaml.safe_load(block)


@pytest.mark.parametrize("marker", ["on-pass-set-alias: validated", "secrets.OPENAI_API_KEY"])  # a model; a GenAI model
def test_the_github_job_is_a_workflows_jobs_and_passes_only_the_actions_inputs(marker):
    workflow = {"on": "pull_request", **readme_block(marker)}
    jsonschema.validate(workflow, json.loads((SCHEMAS / "github-workflows.json").read_text()))
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-24.04"  # GitHub's default Linux runner
    (step,) = [step for step in job["steps"] if step.get("uses", "").startswith("mlflow-validator/mlflow-validator@")]
    declared = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    assert set(step["with"]) <= set(declared)
    assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN"} <= set(step["env"])


def test_the_gitlab_job_fits_gitlabs_schema_and_passes_only_the_components_inputs():
    pipeline = readme_block("mlflow-validator/validate@")
    jsonschema.validate(pipeline, json.loads((SCHEMAS / "gitlab-ci.json").read_text()))
    (included,) = pipeline["include"]
    spec = next(yaml.safe_load_all((ROOT / "templates" / "validate.yml").read_text()))["spec"]
    assert set(included["inputs"]) <= set(spec["inputs"])
    required = {name for name, declared in spec["inputs"].items() if "default" not in declared}
    assert required <= set(included["inputs"])
