"""Each static check against models with that defect, and against clean models, through the real registry."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mlflow_validator.uv import export_command, uv_binary
from tests.integration.conftest import MODELS_DIR, CliResult
from tests.integration.test_validate_cli import read_report

EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-classifier"


@pytest.fixture(scope="module")
def register(registered, tmp_path_factory) -> Callable[..., str]:
    """Upload a (tampered) copy of the example model as run artifacts and register it; returns its URI."""
    import mlflow

    def register_copy(name: str, tamper: Callable[[Path], None]) -> str:
        model = tmp_path_factory.mktemp(name) / "model"
        shutil.copytree(EXAMPLE, model)
        tamper(model)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        return f"models:/{name}/1"

    return register_copy


def static_run(run_cli, registered, uri: str, *args: str) -> tuple[CliResult, dict[str, str], ET.Element]:
    result = run_cli(
        "validate",
        uri,
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "static",
        "--junit-xml",
        "report.xml",
        *args,
    )
    report = result.scratch.parent / "report.xml"
    return result, read_report(report)["static"], ET.parse(report).getroot()


def failure_text(root: ET.Element, check: str) -> str:
    failure = root.find(f".//testcase[@name='{check}']/failure")
    assert failure is not None, f"{check} did not fail"
    return failure.get("message", "")


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_clean_sklearn_model_raises_no_alarm_and_writes_a_lock(run_cli, registered):
    result, statuses, _ = static_run(run_cli, registered, "models:/iris-classifier/1")
    assert result.returncode == 0, result.stdout
    assert {name for name, status in statuses.items() if status != "passed"} == {
        "platforms",
        "runtime-constraints",
        "uv-lock",
        "code-imports",
    }
    lock = (result.scratch.parent / "mlflow-validator-report" / "requirements.lock.txt").read_text()
    assert "scikit-learn==" in lock and "threadpoolctl==" in lock  # transitive pins too


def test_model_logged_with_locked_dependencies_is_clean(run_cli, registered, tmp_path):
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    features = pd.DataFrame({"x": [0.0, 1.0]})
    os.environ["MLFLOW_LOCK_MODEL_DEPENDENCIES"] = "true"
    try:
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                LogisticRegression().fit(features, [0, 1]),
                name="model",
                input_example=features,
                registered_model_name="iris-locked",
            )
    finally:
        del os.environ["MLFLOW_LOCK_MODEL_DEPENDENCIES"]
    result, statuses, _ = static_run(run_cli, registered, "models:/iris-locked/1")
    assert result.returncode == 0, result.stdout
    assert "failure" not in statuses.values()


def test_missing_data_file_fails_integrity(run_cli, registered, register):
    uri = register("missing-weights", lambda model: (model / "model.skops").unlink())
    result, _, root = static_run(run_cli, registered, uri)
    assert result.returncode == 1
    assert "sklearn.pickled_model -> model.skops" in failure_text(root, "integrity")


def test_environment_files_that_disagree(run_cli, registered, register):
    def tamper(model: Path) -> None:
        edit_yaml(model / "python_env.yaml", lambda env: env.update(python="3.10.14"))
        (model / "requirements.txt").write_text((model / "requirements.txt").read_text() + "\nrequests==2.32.3\n")

    _, _, root = static_run(run_cli, registered, register("disagreeing-env", tamper))
    message = failure_text(root, "environment-agreement")
    assert "python_env.yaml 3.10.14, conda.yaml 3.11.7" in message
    assert "only in requirements.txt: ['requests==2.32.3']" in message


def test_unpinned_requirement_gets_the_command_that_pins_it(run_cli, registered, register):
    def tamper(model: Path) -> None:
        requirements = (model / "requirements.txt").read_text().splitlines()
        (model / "requirements.txt").write_text(
            "\n".join(["pandas>=2" if r.startswith("pandas==") else r for r in requirements])
        )

    _, _, root = static_run(run_cli, registered, register("unpinned", tamper))
    message = failure_text(root, "pinned")
    assert "pandas>=2" in message
    assert 'mlflow models update-pip-requirements -m models:/unpinned/1 add "pandas==' in message


def test_unresolvable_requirement_is_rejected_in_seconds(run_cli, registered):
    result, statuses, root = static_run(run_cli, registered, "models:/iris-bad-pin/1")
    assert result.returncode == 1
    message = failure_text(root, "resolvable")
    assert "cloudpickle==99.0.0" in message
    assert "mlflow models update-pip-requirements" in message
    assert statuses["code-imports"] == "skipped"


def test_a_requirement_with_wheels_for_x86_64_alone_fails_where_arm64_is_asked_for(run_cli, registered, register):
    """tbb publishes wheels for x86-64 Linux and Windows only, and no source distribution (PyPI, as resolved)."""

    def tamper(model: Path) -> None:
        requirements = model / "requirements.txt"
        requirements.write_text(requirements.read_text().rstrip() + "\ntbb==2023.2.0\n")
        edit_yaml(model / "conda.yaml", lambda conda: conda["dependencies"][-1]["pip"].append("tbb==2023.2.0"))

    uri = register("amd64-only", tamper)
    result, statuses, _ = static_run(run_cli, registered, uri)
    assert (result.returncode, statuses["resolvable"], statuses["platforms"]) == (0, "passed", "skipped")

    result, statuses, root = static_run(run_cli, registered, uri, "--platforms", "linux/amd64,linux/arm64")
    assert result.returncode == 1, result.stdout
    message = failure_text(root, "platforms")
    assert "cannot be installed on linux/arm64 (aarch64-manylinux_2_36)" in message and "tbb" in message
    assert statuses["resolvable"] == "passed"


def test_the_models_own_uv_config_and_build_code_never_run_on_the_runner(run_cli, registered, tmp_path):
    """A uv.toml in the model (uv's working directory) would point uv elsewhere; a local project among the
    requirements would have its setup.py run by uv to learn its metadata, on the runner, uncaged."""
    marker = tmp_path / "built-on-the-runner"
    model = tmp_path / "model"
    shutil.copytree(EXAMPLE, model)
    (model / "uv.toml").write_text('[pip]\nindex-url = "http://127.0.0.1:9/simple"\n')
    result, statuses, _ = static_run(run_cli, registered, str(model))
    assert statuses["resolvable"] == "passed", result.stdout  # the model's uv.toml was not read

    (model / "helper").mkdir()
    (model / "helper" / "setup.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from setuptools import setup\nsetup(name='helper', version='1.0')\n"
    )
    requirements = model / "requirements.txt"
    requirements.write_text(requirements.read_text().rstrip() + "\n./helper\n")
    edit_yaml(model / "conda.yaml", lambda conda: conda["dependencies"][-1]["pip"].append("./helper"))
    result, statuses, root = static_run(run_cli, registered, str(model))
    assert statuses["resolvable"] == "failure", result.stdout
    assert "./helper (not a requirement)" in failure_text(root, "resolvable")  # a local project is never given
    assert not marker.exists()

    # A requirement published only as a source distribution would be built to learn its metadata: never. That
    # is the validator's limit, not the model's fault: exit 2.
    requirements.write_text(requirements.read_text().replace("./helper", "antlr4-python3-runtime==4.9.3"))
    result, statuses, root = static_run(run_cli, registered, str(model))
    assert (result.returncode, statuses["resolvable"]) == (2, "error"), result.stdout
    assert "the validator builds nothing on the runner" in result.stdout


def test_target_runtime_conflict_is_reported_package_by_package(run_cli, registered, tmp_path):
    (tmp_path / "runtime.txt").write_text("scikit-learn==1.5.2\ncloudpickle==3.1.1\n")
    result, _, root = static_run(
        run_cli, registered, "models:/iris-classifier/1", "--constraints", str(tmp_path / "runtime.txt")
    )
    assert result.returncode == 1
    message = failure_text(root, "runtime-constraints")
    assert "the model's lock needs scikit-learn 1.9.1, the target runtime has 1.5.2" in message


def test_compatible_target_runtime_passes_and_constrains_the_venv(run_cli, registered, tmp_path):
    from importlib.metadata import version

    (tmp_path / "runtime.txt").write_text(f"scikit-learn=={version('scikit-learn')}\n")
    result = run_cli(
        "validate",
        "models:/iris-classifier/1",
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "static,venv",
        "--constraints",
        str(tmp_path / "runtime.txt"),
    )
    assert result.returncode == 0, result.stdout
    assert "within runtime.txt" in result.stdout


def uv_project(pandas_pin: str | None) -> Callable[[Path], None]:
    """Turn the example into a uv project, as MLflow logs one: uv.lock, pyproject.toml, and requirements.txt
    holding `uv export` of the lock (with pandas re-pinned when `pandas_pin` is given)."""

    def make(model: Path) -> None:
        direct = (model / "requirements.txt").read_text().split()
        dependencies = ", ".join(f'"{requirement}"' for requirement in direct)
        (model / "pyproject.toml").write_text(
            '[project]\nname = "iris"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            f"dependencies = [{dependencies}]\n"
        )
        subprocess.run([uv_binary(), "lock", "--project", str(model)], check=True, capture_output=True)
        export = [str(arg) for arg in export_command(uv_binary(), model)]
        exported = subprocess.run(export, check=True, capture_output=True, text=True).stdout
        if pandas_pin:
            exported = re.sub(r"^pandas==\S+", f"pandas=={pandas_pin}", exported, flags=re.MULTILINE)
        (model / "requirements.txt").write_text(exported)
        pip_section = {"pip": [line for line in exported.splitlines() if line and not line.lstrip().startswith("#")]}
        edit_yaml(
            model / "conda.yaml",
            lambda conda: conda.update(
                dependencies=[d for d in conda["dependencies"] if not isinstance(d, dict)] + [pip_section]
            ),
        )

    return make


def test_uv_project_installs_from_its_lock(run_cli, registered, register):
    uri = register("uv-project", uv_project(pandas_pin=None))
    result = run_cli(
        "validate",
        uri,
        "--tracking-uri",
        registered.tracking_uri,
        "--stages",
        "static,venv",
        "--junit-xml",
        "report.xml",
    )
    assert result.returncode == 0, result.stdout
    assert read_report(result.scratch.parent / "report.xml")["static"]["uv-lock"] == "passed"
    assert "of the lock (from uv.lock)" in result.stdout


def test_uv_project_whose_requirements_drift_from_the_lock(run_cli, registered, register):
    _, _, root = static_run(run_cli, registered, register("uv-project-drifted", uv_project(pandas_pin="2.2.3")))
    message = failure_text(root, "uv-lock")
    assert "requirements.txt does not match uv.lock: pandas: uv.lock" in message
    assert "requirements.txt 2.2.3" in message


def test_flattened_code_paths_are_caught(run_cli, registered, monkeypatch):
    import mlflow
    import pandas as pd

    example = pd.DataFrame({"x": [1.0, 2.0]})
    # Logging imports the model file; `src` imports fine from the user's project directory, as here.
    monkeypatch.syspath_prepend(str(MODELS_DIR))
    for name, code_paths in (
        ("code-paths-flat", [str(MODELS_DIR / "src" / "utils.py")]),
        ("code-paths-package", [str(MODELS_DIR / "src")]),
    ):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODELS_DIR / "code_paths_model.py"),
                code_paths=code_paths,
                input_example=example,
                pip_requirements=[f"mlflow=={mlflow.__version__}"],
                registered_model_name=name,
            )
    _, _, root = static_run(run_cli, registered, "models:/code-paths-flat/1")
    assert 'log code_paths=["src"]' in failure_text(root, "code-imports")
    result, package, _ = static_run(run_cli, registered, "models:/code-paths-package/1")
    assert package["code-imports"] == "passed", result.stdout


def test_secret_in_logged_code_is_found_and_not_printed(run_cli, registered, register):
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"

    def tamper(model: Path) -> None:
        (model / "code").mkdir()
        (model / "code" / "train.py").write_text(f"import os\n\nGITHUB = '{secret}'\n")

    result, _, root = static_run(run_cli, registered, register("leaky", tamper))
    assert "code/train.py:3 (GitHub Token)" in failure_text(root, "secrets")
    assert secret not in result.stdout + (result.scratch.parent / "report.xml").read_text()


def test_missing_example_and_signature(run_cli, registered, register):
    def tamper(model: Path) -> None:
        def drop(meta: dict) -> None:
            meta.pop("saved_input_example_info")
            meta.pop("signature")

        edit_yaml(model / "MLmodel", drop)

    _, statuses, root = static_run(run_cli, registered, register("no-example", tamper))
    assert "input_example=" in failure_text(root, "input-example")
    assert "signature" in failure_text(root, "signature")
    assert statuses["example-matches-signature"] == "skipped"


def test_example_that_breaks_the_signature(run_cli, registered, register):
    def tamper(model: Path) -> None:
        example = (model / "serving_input_example.json").read_text()
        (model / "serving_input_example.json").write_text(example.replace('"petal width (cm)"', '"petal wdith"'))

    _, _, root = static_run(run_cli, registered, register("bad-example", tamper))
    assert "does not conform to the input signature" in failure_text(root, "example-matches-signature")


def test_policy_warn_keeps_the_gate_open(run_cli, registered, tmp_path):
    (tmp_path / "mlflow-validator.yaml").write_text("checks:\n  resolvable: warn\n  code-imports: off\n")
    result, statuses, _ = static_run(run_cli, registered, "models:/iris-bad-pin/1")
    assert result.returncode == 0, result.stdout
    assert " WARN  static resolvable" in result.stdout
    assert statuses["resolvable"] == "passed"
