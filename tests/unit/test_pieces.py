"""Small pure pieces: URI parsing, the step runner, isolation, uv messages, Dockerfile edits."""

from pathlib import Path

import pytest

from validator.errors import InfrastructureError, UsageError
from validator.isolation import install_tool_env, model_process_env
from validator.model.fetch import parse_model_uri
from validator.model.mlmodel import ModelFileError
from validator.results import Stage, Status, failed, passed
from validator.settings import BuildNetwork, resolve_options
from validator.stages.docker.image import add_build_settings, build_args
from validator.steps import Step, run_steps
from validator.uv import repair_hint, summarize_failure

UV_OUTPUT = """Using Python 3.11.7 environment at: /tmp/venv
  × No solution found when resolving dependencies:
  ╰─▶ Because there is no version of cloudpickle==99.0.0 and you require cloudpickle==99.0.0, we can
      conclude that your requirements are unsatisfiable.
"""


@pytest.mark.parametrize(
    ("uri", "fields"),
    [
        ("models:/iris/3", {"name": "iris", "version": "3"}),
        ("models:/iris@champion", {"name": "iris", "alias": "champion"}),
        ("runs:/" + "a" * 32 + "/model", {"run_id": "a" * 32}),
        ("examples/iris", {"name": "iris", "local_path": Path("examples/iris")}),
    ],
)
def test_supported_uris(uri, fields):
    ref = parse_model_uri(uri)
    assert {key: getattr(ref, key) for key in fields} == fields


@pytest.mark.parametrize("uri", ["s3://b/m", "models:/iris", "models:/iris/Production", "runs:/short/model"])
def test_unsupported_uris(uri):
    with pytest.raises(UsageError, match="models:/NAME/VERSION"):
        parse_model_uri(uri)


def test_steps_after_a_failure_are_skipped_with_the_blocker_named():
    steps = [Step("a", lambda: failed("no")), Step("b", lambda: passed()), Step("c", lambda: passed(), requires=())]
    results = list(run_steps(Stage.VENV, steps))
    assert [r.status for r in results] == [Status.FAILED, Status.SKIPPED, Status.PASSED]
    assert "'a' did not pass" in results[1].message


def test_a_broken_model_file_fails_the_step_whatever_the_stage():
    def reads_python_env() -> None:
        raise ModelFileError("requirements.txt is missing")

    results = list(run_steps(Stage.VENV, [Step("install-requirements", reads_python_env)]))
    assert results[0].status is Status.FAILED
    assert results[0].message.startswith("requirements.txt is missing")


def test_an_infrastructure_error_stops_the_stage():
    def broken() -> None:
        raise InfrastructureError("engine gone", "restart it")

    results = list(run_steps(Stage.DOCKER, [Step("a", broken), Step("b", lambda: passed(), requires=())]))
    assert [r.status for r in results] == [Status.ERROR, Status.SKIPPED]
    assert results[0].message == "engine gone: restart it"


def test_model_processes_never_see_ci_secrets(tmp_path):
    ci_env = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "MLFLOW_TRACKING_TOKEN": "s",
        "AWS_SECRET_ACCESS_KEY": "s",
        "GITHUB_TOKEN": "s",
        "CI_JOB_TOKEN": "s",
        "DATABRICKS_TOKEN": "s",
        "HOME": "/root",
    }
    env = model_process_env(ci_env, home=tmp_path, bin_dir=tmp_path / "bin", declared={})
    assert set(env) == {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE"}
    assert env["HOME"] == str(tmp_path)
    assert not {"MLFLOW_TRACKING_TOKEN", "GITHUB_TOKEN"} & set(install_tool_env(ci_env, BuildNetwork()))


def test_model_processes_get_only_the_variables_the_config_file_declares(tmp_path):
    ci_env = {"PATH": "/usr/bin", "HF_HOME": "/cache/hf", "GITHUB_TOKEN": "s"}
    config = tmp_path / "c.yaml"
    config.write_text("env:\n  pass: [HF_HOME]\n  set: {MODE: offline}\n")
    options = resolve_options({"model_uri": "m", "config": str(config)}, ci_env, tmp_path)
    env = model_process_env(ci_env, home=tmp_path, bin_dir=tmp_path / "bin", declared=options.model_env)
    assert env["HF_HOME"] == "/cache/hf"
    assert env["MODE"] == "offline"
    assert "GITHUB_TOKEN" not in env


def test_install_tools_get_the_ca_bundle_and_never_download_interpreters(tmp_path):
    env = install_tool_env({"PATH": "/bin"}, BuildNetwork(ca_bundle=tmp_path / "ca.pem", https_proxy="http://p:3128"))
    assert env["SSL_CERT_FILE"] == str(tmp_path / "ca.pem")
    assert env["HTTPS_PROXY"] == "http://p:3128"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_uv_failures_are_summarized_with_the_package_and_the_repair_command():
    assert "no version of cloudpickle==99.0.0" in summarize_failure(UV_OUTPUT)
    hint = repair_hint("models:/iris/3", UV_OUTPUT)
    assert 'mlflow models update-pip-requirements -m models:/iris/3 add "cloudpickle==<a released version>"' in hint


def test_dockerfile_gets_the_ca_bundle_right_after_from(tmp_path):
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# comment\nFROM python:3.11.7-slim\nRUN pip install mlflow\n")
    add_build_settings(dockerfile, BuildNetwork(ca_bundle=ca), constraints=None)
    lines = dockerfile.read_text().splitlines()
    assert lines[1] == "FROM python:3.11.7-slim"
    assert lines.index("ARG PIP_CERT=/usr/local/share/mlflow-validator/ca.pem") < lines.index("RUN pip install mlflow")
    assert (tmp_path / "mlflow-validator-ca.pem").read_text() == ca.read_text()


def test_proxies_are_passed_as_build_args_not_written_into_the_dockerfile():
    assert build_args(BuildNetwork(https_proxy="http://p:3128")) == ["--build-arg", "HTTPS_PROXY=http://p:3128"]
