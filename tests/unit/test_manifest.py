"""The deployment manifest parsed into entries that remember their line, and refused at the line at fault."""

from pathlib import Path

import pytest

from mlflow_validator.batch.manifest import ManifestError, parse_manifest
from mlflow_validator.errors import UsageError

PATH = Path("deploy/mlflow-models.yaml")


def test_entries_take_a_version_an_alias_or_settings():
    manifest = parse_manifest(
        """\
environments:
  production:
    churn: 3
    fraud: "@champion"
  staging:
    churn:
      version: 4
      requests: requests/churn
      config: churn.yaml
      stages: [static, venv]
""",
        PATH,
    )
    churn_prod, fraud, churn_staging = manifest.entries
    assert (churn_prod.id, churn_prod.model_uri, churn_prod.line) == ("production/churn", "models:/churn/3", 3)
    assert (fraud.model_uri, fraud.alias) == ("models:/fraud@champion", "champion")
    assert churn_staging.line == 6
    assert manifest.flags(churn_staging) == [
        *("--config", "deploy/churn.yaml", "--requests", "deploy/requests/churn", "--stages", "static,venv")
    ]
    assert manifest.files(churn_staging) == [Path("deploy/churn.yaml"), Path("deploy/requests/churn")]


def test_mlflow_3s_references_are_entries_too_latest_and_a_logged_models_id():
    manifest = parse_manifest(
        "environments:\n  review:\n    churn: latest\n    agent: m-4a1d2b3c4d5e6f708192a3b4c5d6e7f8\n"
        "    scorer: {model_id: m-0123456789abcdef, stages: [static]}\n",
        PATH,
    )
    churn, agent, scorer = manifest.entries
    assert (churn.version, churn.model_uri) == ("latest", "models:/churn/latest")
    assert (agent.model_id, agent.model_uri) == (
        "m-4a1d2b3c4d5e6f708192a3b4c5d6e7f8",
        "models:/m-4a1d2b3c4d5e6f708192a3b4c5d6e7f8",
    )
    assert (scorer.model_uri, manifest.flags(scorer)) == ("models:/m-0123456789abcdef", ["--stages", "static"])


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        (
            "environments:\n  prod:\n    churn:\n      versoin: 3\n",
            4,
            "unknown key 'versoin' (did you mean 'version'?)",
        ),
        (
            "environments:\n  prod:\n    churn: {version: 3, alias: a}\n",
            3,
            "exactly one of a version, an alias or a logged model's id",
        ),
        ("environments:\n  prod:\n    churn: newest\n", 3, "version 'newest', which is not a number"),
        ("environments:\n  prod:\n    churn: {version: 3, stages: stati}\n", 3, "unknown stage 'stati'"),
        ("environments:\n  prod:\n    churn: 3\n    churn: 4\n", 4, "'churn' appears twice"),
        ("environments:\n  prod:\n    churn: [3\n", 4, "not valid YAML"),
        ("environment:\n  prod: {}\n", 1, "unknown key 'environment'"),
        ("environments:\n  - churn\n", 2, "`environments` must map environment names to models"),
    ],
)
def test_a_malformed_entry_is_refused_at_its_line(text, line, said):
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text, PATH)
    assert str(raised.value).startswith(f"{PATH}:{line}: ")
    assert said in str(raised.value)
    assert (raised.value.file, raised.value.line, raised.value.exit_code) == (PATH, line, 2)


def test_an_entry_named_by_id_and_a_wrong_id_gets_a_suggestion():
    manifest = parse_manifest("environments:\n  production:\n    churn: 3\n", PATH)
    assert manifest.entry("production/churn").version == "3"
    with pytest.raises(UsageError, match="did you mean 'production/churn'"):
        manifest.entry("prodution/churn")
