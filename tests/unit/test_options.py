import pytest

from mlflow_validator.errors import UsageError
from mlflow_validator.results import SELECTABLE_STAGES, Stage
from mlflow_validator.settings import resolve_options
from mlflow_validator.settings.types import parse_stages


def test_defaults_without_any_source(tmp_path):
    options = resolve_options({"model_uri": "m"}, env={}, cwd=tmp_path)
    assert options.stages == SELECTABLE_STAGES
    assert not options.given("stages")
    assert options.junit_path == tmp_path / "mlflow-validator-report/junit.xml"
    assert options.build.ca_bundle is None


def test_precedence_is_defaults_then_config_then_env_then_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("tolerance:\n  rtol: 0.1\n  atol: 0.2\ntimeouts:\n  predict: 5\nstages: [static]\n")
    env = {"MLFLOW_VALIDATOR_RTOL": "0.3", "MLFLOW_VALIDATOR_ATOL": "0.4"}
    options = resolve_options({"model_uri": "m", "tolerance.atol": "0.5", "config": str(config)}, env, tmp_path)
    assert options.tolerance.rtol == 0.3  # env beats config
    assert options.tolerance.atol == 0.5  # flag beats env
    assert options.timeouts.predict == 5  # config beats default
    assert options.stages == (Stage.STATIC,)
    assert options.given("stages")


def test_default_config_file_is_read_from_the_working_directory(tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("output_dir: out\n")
    assert resolve_options({"model_uri": "m"}, env={}, cwd=tmp_path).output_dir == tmp_path / "out"


def test_ca_bundle_falls_back_to_the_variables_pip_already_uses(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    assert resolve_options({"model_uri": "m"}, {"PIP_CERT": str(ca)}, tmp_path).build.ca_bundle == ca


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("stagse: [static]\n", "did you mean 'stages'"),
        ("timeouts:\n  predict: -1\n", "positive"),
        ("- a list\n", "must be a mapping"),
        ("a: [\n", "not valid YAML"),
        ("env:\n  pass: [NOT_SET_ANYWHERE]\n", "env.pass names NOT_SET_ANYWHERE, which the environment does not set"),
        ("env:\n  pass: ['A-B']\n", "not an environment variable name"),
        ("tolerance:\n  columns: {score: {rtl: 1}}\n", "column 'score' must be a mapping with rtol and/or atol"),
        ("requests:\n  batch_size: 0\n", "whole number >= 1"),
        ("budgets:\n  max_changed_fraction: 2\n", "between 0 and 1"),
        ("budgets:\n  max_latency: 2\n", "did you mean 'budgets.max_latency_ms'"),
        ("requests:\n  directory: no-such-dir\n", "requests directory .*/no-such-dir does not exist"),
        ("docker:\n  serving: kserve\n", "mlflow, mlserver, both"),
        ("docker:\n  serving: mlserver\n  image_tag: team/model:1\n", "which --serving mlserver does not build"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path, config, message):
    path = tmp_path / "c.yaml"
    path.write_text(config)
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        resolve_options({"model_uri": "m", "config": str(path)}, {}, tmp_path)


def test_extra_index_urls_come_space_separated_from_pip_s_variable_or_as_a_list(tmp_path):
    from_env = resolve_options({"model_uri": "m"}, {"PIP_EXTRA_INDEX_URL": "https://a/simple https://b/"}, tmp_path)
    assert from_env.build.extra_index_urls == ("https://a/simple", "https://b/")
    with pytest.raises(UsageError, match="not a URL"):
        resolve_options({"model_uri": "m", "build.extra_index_urls": ["a/simple"]}, {}, tmp_path)


def test_stages_keep_pipeline_order_and_reject_typos():
    assert parse_stages("docker,static") == (Stage.STATIC, Stage.DOCKER)
    with pytest.raises(ValueError, match="did you mean 'venv'"):
        parse_stages("static,vnev")


def test_inference_settings_come_from_the_config_file(tmp_path):
    (tmp_path / "requests").mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(
        "requests: {directory: requests, batch_size: 4, latency_samples: 50}\n"
        "tolerance: {rtol: 0.001, columns: {score: {atol: 0.1}}}\n"
        "budgets: {max_load_seconds: 30, max_latency_ms: 250, max_changed_fraction: 0.05}\n"
        "baseline: models:/iris@champion\n"
        "env: {pass: [HF_HOME], set: {MODE: offline, DEBUG: false}}\n"
    )
    options = resolve_options({"model_uri": "m", "config": str(config)}, {"HF_HOME": "/hf"}, tmp_path)
    assert options.requests.directory == tmp_path / "requests"
    assert (options.requests.batch_size, options.requests.latency_samples) == (4, 50)
    assert options.tolerance.for_column("score").atol == 0.1
    assert options.tolerance.for_column("score").rtol == 0.001  # what a column does not set comes from the global
    assert options.tolerance.for_column("label") is options.tolerance
    assert options.budgets.max_latency_ms == 250
    assert options.baseline == "models:/iris@champion"
    assert options.model_env == {"HF_HOME": "/hf", "MODE": "offline", "DEBUG": "false"}


def test_requests_and_baseline_flags_beat_the_config_file(tmp_path):
    (tmp_path / "mine").mkdir()
    flags = {"model_uri": "m", "requests.directory": "mine", "baseline": "models:/iris/1"}
    options = resolve_options(flags, {"MLFLOW_VALIDATOR_BASELINE": "models:/iris/2"}, tmp_path)
    assert options.requests.directory == tmp_path / "mine"
    assert options.baseline == "models:/iris/1"
