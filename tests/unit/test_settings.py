"""What is derived from the declarations stays in step with them: README tables, the JSON Schema,
the flags; and each value remembers where it came from."""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml

from mlflow_validator.checks import CHECKS, POLICY_CHECKS
from mlflow_validator.cli import SELECTION, build_parser
from mlflow_validator.docs import DOCS, documents, with_generated_blocks
from mlflow_validator.results import Stage
from mlflow_validator.settings import resolve_options
from mlflow_validator.settings.declared import SETTINGS
from mlflow_validator.settings.docs import SCHEMA_FILE, describe, json_schema, render_json_schema
from mlflow_validator.settings.types import BOOL


@pytest.mark.parametrize("page", documents(), ids=lambda page: page.name)
def test_the_docs_tables_are_generated_from_the_declarations(page):
    text = page.read_text()
    assert with_generated_blocks(text) == text, f"{page.name}'s tables are stale: run scripts/update-docs"


def test_the_shipped_json_schema_is_generated_from_the_declarations():
    assert SCHEMA_FILE.read_text() == render_json_schema(), "the JSON Schema is stale: run scripts/update-docs"


def is_ci_file(config: dict) -> bool:
    """A GitHub workflow (`jobs:`), a GitLab CI file (a job is a mapping with a `script`), or a deployment
    manifest (`environments:`): YAML the README shows that is not the validator's config."""
    jobs = any(isinstance(value, dict) and "script" in value for value in config.values())
    return "jobs" in config or "environments" in config or jobs


def test_every_yaml_example_in_the_docs_that_configures_the_validator_fits_the_schema():
    blocks = [block for page in documents() for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.DOTALL)]
    configs = [yaml.safe_load(block) for block in blocks if not block.lstrip().startswith(("- ", "include", "name"))]
    configs = [config for config in configs if isinstance(config, dict) and not is_ci_file(config)]
    assert configs
    for config in configs:
        jsonschema.validate(config, json_schema())


@pytest.mark.parametrize(
    "config",
    [{"stagse": ["static"]}, {"timeouts": {"predict": -1}}, {"checks": {"pined": "warn"}}, {"build": {"ca": "x"}}],
)
def test_the_schema_rejects_what_the_resolver_rejects(config, tmp_path):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, json_schema())


def test_every_flag_comes_from_a_declaration_but_those_that_select_models():
    validate = build_parser()._subparsers._group_actions[0].choices["validate"]  # type: ignore[union-attr]
    flags = {option for action in validate._actions for option in action.option_strings}
    declared = {setting.declaration.flag for setting in SETTINGS if setting.declaration.flag}
    negated = {f"--no-{s.declaration.flag[2:]}" for s in SETTINGS if s.declaration.flag and s.declaration.type is BOOL}
    assert flags - {"-h", "--help"} == declared | negated | {f"--{name}" for name in SELECTION} - {
        "--format",
        "--component",
    }


def test_a_boolean_flag_has_its_no_form_and_it_beats_the_config_file(tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("keep: true\n")
    given = vars(build_parser().parse_args(["validate", "m", "--no-keep"]))
    assert given["keep"] is False
    assert resolve_options({"model_uri": "m", "keep": given["keep"]}, {}, tmp_path).keep is False


def test_policies_exist_for_the_checks_the_registry_says_and_names_are_unique_per_stage():
    assert set(json_schema()["properties"]["checks"]["properties"]) == set(POLICY_CHECKS)
    keys = [(check.stage, check.name) for check in CHECKS]
    assert len(keys) == len(set(keys))


def test_each_value_remembers_its_source_and_secrets_are_redacted(tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("env: {set: {TOKEN: hunter2}}\ntimeouts: {predict: 30}\n")
    env = {"MLFLOW_VALIDATOR_RTOL": "0.1", "HTTPS_PROXY": "http://me:hunter2@proxy:3128"}
    options = resolve_options({"model_uri": "m", "stages": "static"}, env, tmp_path)
    assert options.sources["stages"] == "flag --stages"
    assert options.sources["tolerance.rtol"] == "environment MLFLOW_VALIDATOR_RTOL"
    assert options.sources["timeouts.predict"].startswith("config file ")
    assert "timeouts.install" not in options.sources  # the default
    listing = describe(options)
    assert "hunter2" not in listing
    assert "http://me:***@proxy:3128" in listing


CONSOLE_LINE = re.compile(r"^ *(?:PASS|FAIL|SKIP|WARN|ERROR|\.\.\.) +(static|venv|docker) +([\w-]+) ", re.MULTILINE)


def test_the_docs_console_samples_name_only_checks_that_exist():
    """A sample printed before a check was renamed or removed would teach the wrong name."""
    known = {(check.stage.value, check.name) for check in CHECKS}
    shown = {match for page in documents() for match in CONSOLE_LINE.findall(page.read_text())}
    assert shown and shown <= known | {(stage, stage) for stage in ("static", "venv", "docker")}, shown - known


def test_the_docs_say_the_core_count_and_check_counts_the_code_has():
    from mlflow_validator.settings.options import EARLY_BUILD_CORES

    ci = (DOCS / "ci.md").read_text()
    assert re.findall(r"On a machine with (\d+) cores or more", ci) == [str(EARLY_BUILD_CORES)]
    static = sum(check.stage.value == "static" for check in CHECKS)
    said = {
        int(n) for page in documents() for n in re.findall(r"static stage, sum of its (\d+) checks", page.read_text())
    }
    assert said == {static}


def test_the_quickstarts_full_run_shows_every_check_of_the_stages_it_ran():
    """The sample of a whole run lists what a run prints today: no check missing, none renamed."""
    sample = re.search(r"```\n(Validating .*?)```", (DOCS / "quickstart.md").read_text(), re.DOTALL)
    assert sample
    shown = set(CONSOLE_LINE.findall(sample.group(1)))
    assert shown == {(check.stage.value, check.name) for check in CHECKS if check.stage is not Stage.MLSERVER}


def test_the_checks_reference_gives_a_failure_message_for_every_check():
    page = (DOCS / "checks.md").read_text()
    section = page[page.index("### What each check says when it fails") :]
    section = section[: section.index("\n## ")]
    shown = set(re.findall(r"^\| (static|venv|docker|mlserver) `([\w-]+)` \|", section, re.MULTILINE))
    assert shown == {(check.stage.value, check.name) for check in CHECKS}
