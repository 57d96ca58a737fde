"""The GitLab CI/CD component and the GitLab examples against GitLab's published CI schema (check-jsonschema's
vendored copy); a component file is two YAML documents, its `spec:` header and its jobs."""

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlflow_validator import __version__

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / "gitlab-ci.json").read_text())
GITLAB_FILES = sorted([*(ROOT / "templates").glob("*.yml"), *(ROOT / "examples" / "gitlab").glob("*.yml")])
COMPONENT = ROOT / "templates" / "validate.yml"


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda path: path.name)
def test_every_document_fits_gitlabs_ci_schema(path):
    for document in documents(path):
        jsonschema.validate(document, SCHEMA)


def test_every_input_is_described_and_used():
    spec, _ = documents(COMPONENT)
    inputs = spec["spec"]["inputs"]
    assert all(declared.get("description") for declared in inputs.values())
    used = set(re.findall(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]", COMPONENT.read_text()))
    assert used == set(inputs)


def test_the_image_is_pinned_to_this_version():
    spec, _ = documents(COMPONENT)
    assert spec["spec"]["inputs"]["image"]["default"].endswith(f":{__version__}")
