"""The GitLab CI/CD component and the GitLab examples against GitLab's published CI schema (check-jsonschema's
vendored copy); a component file is two YAML documents, its `spec:` header and its jobs."""

import json
import re
import types
from importlib.machinery import SourceFileLoader
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from mlflow_validator import __version__

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((files("check_jsonschema") / "builtin_schemas" / "vendor" / "gitlab-ci.json").read_text())
GITLAB_FILES = sorted(
    [*(ROOT / "templates").glob("*.yml"), *(ROOT / "examples" / "gitlab").glob("*.yml"), ROOT / ".gitlab-ci.yml"]
)
COMPONENT = ROOT / "templates" / "validate.yml"


def documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


INPUT = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]")


def interpolated(path: Path) -> list[dict]:
    """The documents as GitLab includes them with every input at its default. GitLab interpolates the parsed
    YAML: a value that is one `$[[ inputs.NAME ]]` becomes the input itself (an array stays an array), one that
    holds several becomes text."""
    found = documents(path)
    inputs = found[0]["spec"]["inputs"] if "spec" in found[0] else {}

    def filled(node: object) -> object:
        if isinstance(node, dict):
            return {filled(key): filled(value) for key, value in node.items()}
        if isinstance(node, list):
            return [filled(item) for item in node]
        if isinstance(node, str) and (whole := INPUT.fullmatch(node.strip())):
            return inputs[whole.group(1)].get("default", "")
        if isinstance(node, str):
            return INPUT.sub(lambda m: str(inputs[m.group(1)].get("default", "")), node)
        return node

    return [document if "spec" in document else filled(document) for document in found]


@pytest.mark.parametrize("path", GITLAB_FILES, ids=lambda path: path.name)
def test_every_document_fits_gitlabs_ci_schema(path):
    for document in interpolated(path):
        jsonschema.validate(document, SCHEMA)


def test_every_input_is_described_and_used():
    spec, _ = documents(COMPONENT)
    inputs = spec["spec"]["inputs"]
    assert all(declared.get("description") for declared in inputs.values())
    used = set(re.findall(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]", COMPONENT.read_text()))
    assert used == set(inputs)


def test_the_image_the_readmes_references_and_the_package_are_one_version():
    """What a release publishes (the package, the image, the Action's tag, the component) under one version."""
    spec, _ = documents(COMPONENT)
    assert spec["spec"]["inputs"]["image"]["default"].endswith(f":{__version__}")
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"uses: mlflow-validator/mlflow-validator@(\S+)", readme)) == {f"v{__version__}"}
    assert set(re.findall(r"mlflow-validator/validate@(\d\S*)", readme + COMPONENT.read_text())) == {__version__}
    image_tags = re.findall(r"registry\.gitlab\.com/mlflow-validator/mlflow-validator:(\d[\w.]*)", readme)
    assert set(image_tags) == {__version__}


def test_the_release_notes_are_the_changelogs_section_for_the_tag(capsys):
    loader = SourceFileLoader("release_notes", str(ROOT / "scripts" / "release-notes"))
    release_notes = types.ModuleType(loader.name)
    release_notes.__file__ = loader.path
    loader.exec_module(release_notes)
    assert release_notes.main([f"v{__version__}", "--check"]) == 0
    assert capsys.readouterr().out.startswith("### ")
    assert release_notes.main(["v99.0.0"]) == 1  # no section for it: the release stops before publishing
    assert "no `## [99.0.0]` section" in capsys.readouterr().err
