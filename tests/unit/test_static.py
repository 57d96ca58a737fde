"""Static checks on model directories made on the spot (the uv-backed ones are integration tests)."""

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from mlflow_validator.checks import Policy
from mlflow_validator.model.fetch import FetchedModel, fetch_model
from mlflow_validator.model.files import ModelFiles
from mlflow_validator.model.lock import Resolver
from mlflow_validator.model.requirements import Kind, parse_requirements
from mlflow_validator.results import ModelIdentity, Status
from mlflow_validator.settings import BuildNetwork, Options, resolve_options
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.static import StaticStage
from mlflow_validator.stages.static.code_imports import check_code_imports, imports_in
from mlflow_validator.stages.static.context import StaticContext, read_pickles_in_background
from mlflow_validator.stages.static.environment import check_agreement, check_pinned
from mlflow_validator.stages.static.integrity import check_integrity
from mlflow_validator.stages.static.secrets import check_secrets

MLMODEL = {
    "mlflow_version": "3.17.2",
    "flavors": {
        "python_function": {
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": "mlflow.pyfunc.model",
            "python_model": "python_model.pkl",
            "code": "code",
            "python_version": "3.11.7",
        }
    },
}


EXECUTOR = ThreadPoolExecutor(max_workers=1)


@dataclass
class ResolvedLock:
    """Stands in for uv's resolution (the uv-backed checks are integration tests)."""

    resolved_pins: dict[str, str] = field(default_factory=dict)


def make_model(
    root: Path,
    requirements: str = "mlflow==3.17.2\npandas==2.2.3\n",
    lock: dict[str, str] | None = None,
    pyfunc: dict[str, str] | None = None,
    **files: str,
) -> StaticContext:
    root.mkdir(parents=True, exist_ok=True)
    mlmodel = copy.deepcopy(MLMODEL)
    mlmodel["flavors"]["python_function"].update(pyfunc or {})
    contents = {
        "MLmodel": yaml.safe_dump(mlmodel),
        "python_env.yaml": "python: 3.11.7\nbuild_dependencies: [pip]\ndependencies: [-r requirements.txt]\n",
        "conda.yaml": yaml.safe_dump({"dependencies": ["python=3.11.7", "pip", {"pip": requirements.split()}]}),
        "requirements.txt": requirements,
        "python_model.pkl": "pickle",
        "code/helpers.py": "import json\n",
        **files,
    }
    for name, text in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    listing = {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}
    files = ModelFiles(root, listing)
    return StaticContext(
        files, "models:/m/1", ResolvedLock(lock or {}), read_pickles_in_background(files, EXECUTOR, ())
    )


def test_requirement_kinds():
    kinds = [line.kind for line in parse_requirements("a==1\nb>=2\nc\n-i https://x\ngit+https://h/r\n./w.whl\n")]
    assert kinds == [Kind.PINNED, Kind.UNPINNED, Kind.UNPINNED, Kind.INDEX_OPTION, Kind.VCS, Kind.PATH]


def test_clean_model_passes_integrity_agreement_and_pinning(tmp_path):
    ctx = make_model(tmp_path)
    assert check_integrity(ctx).status is Status.PASSED
    assert check_agreement(ctx).status is Status.PASSED
    assert check_pinned(ctx).status is Status.PASSED


def test_missing_and_truncated_files_fail_integrity(tmp_path):
    ctx = make_model(tmp_path)
    (tmp_path / "python_model.pkl").unlink()
    del ctx.files.listing["python_model.pkl"]  # the store does not have it
    ctx.files.listing["code/helpers.py"] = 999
    outcome = check_integrity(ctx)
    assert outcome.status is Status.FAILED
    assert "python_function.python_model -> python_model.pkl" in outcome.message
    assert "code/helpers.py (12 of 999 bytes)" in outcome.message


def test_a_link_that_leaves_the_model_fails_integrity_and_is_never_followed(tmp_path):
    secret = tmp_path / "runner-home" / "settings.json"
    secret.parent.mkdir()
    secret.write_text('{"token": "from the runner"}')
    model = tmp_path / "model"
    ctx = make_model(model)
    (model / "artifacts").mkdir()
    (model / "artifacts" / "settings.json").symlink_to(secret)
    (model / "artifacts" / "up").symlink_to("../../runner-home")
    (model / "artifacts" / "inside").symlink_to("../MLmodel")  # stays in the model: fine
    copy = tmp_path / "copy"
    fetched = fetch_model(resolve_options({"model_uri": str(model)}, {}, tmp_path), copy, static_files_only=True)
    assert (fetched.files.directory / "artifacts" / "settings.json").is_symlink()  # the copy keeps the link
    assert "artifacts/settings.json" not in fetched.files.listing
    outcome = check_integrity(replace(ctx, files=fetched.files))
    assert outcome.status is Status.FAILED
    assert f"artifacts/settings.json -> {secret}" in outcome.message
    assert "artifacts/up -> ../../runner-home" in outcome.message
    assert "inside" not in outcome.message


def test_models_from_code_are_found_by_file_name(tmp_path):
    ctx = make_model(
        tmp_path, pyfunc={"model_code_path": "/home/someone/project/model.py"}, **{"model.py": "import mlflow\n"}
    )
    assert check_integrity(ctx).status is Status.PASSED


def test_python_versions_and_mlflow_major_must_agree(tmp_path):
    ctx = make_model(tmp_path, requirements="mlflow==2.22.0\n")
    (tmp_path / "python_env.yaml").write_text("python: 3.10.4\ndependencies: [-r requirements.txt]\n")
    message = check_agreement(ctx).message
    assert "python_env.yaml 3.10.4, conda.yaml 3.11.7, MLmodel 3.11.7" in message
    assert "logged with MLflow 3.17.2 but its requirements install MLflow 2.22.0" in message


def test_unpinned_requirements_get_the_validated_pin_in_the_fix(tmp_path):
    requirements = "mlflow==3.17.2\npandas>=2\n--extra-index-url https://idx\n"
    ctx = make_model(tmp_path, requirements=requirements, lock={"pandas": "2.2.3"})
    message = check_pinned(ctx).message
    assert "line 2: pandas>=2" in message
    assert 'mlflow models update-pip-requirements -m models:/m/1 add "pandas==2.2.3"' in message
    assert "line 3: --extra-index-url https://idx needs that index at build time" in message


def test_imports_guarded_by_import_error_are_optional():
    source = (
        "import os\ntry:\n    import ujson\nexcept ImportError:\n    ujson = None\nfrom a.b import c\nfrom . import d\n"
    )
    assert [s.module for s in imports_in(source, "f.py")] == ["os", "a.b"]


def test_unknown_import_fails_and_locked_distributions_resolve(tmp_path):
    ctx = make_model(
        tmp_path,
        lock={"scikit-learn": "1.9.1"},
        **{
            "code/helpers.py": "import sklearn.linear_model\nimport requests\nimport helpers2\n",
            "code/helpers2.py": "",
        },
    )
    outcome = check_code_imports(ctx)
    assert outcome.status is Status.FAILED
    assert "code/helpers.py:2 imports requests" in outcome.message
    assert "sklearn" not in outcome.message and "helpers2" not in outcome.message


def test_flattened_code_paths_pitfall_says_to_log_the_directory(tmp_path):
    ctx = make_model(tmp_path, **{"code/model_code.py": "from src.utils import f\n", "code/utils.py": "f = 1\n"})
    message = check_code_imports(ctx).message
    assert 'log code_paths=["src"]' in message


def test_secrets_are_reported_by_file_line_and_kind_never_by_value(tmp_path):
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    ctx = make_model(tmp_path, **{"code/helpers.py": f"import os\nAWS_KEY = '{key}'\n"})
    outcome = check_secrets(ctx)
    assert outcome.status is Status.FAILED
    assert "code/helpers.py:2 (AWS Access Key)" in outcome.message
    assert key not in outcome.message + outcome.details


def test_a_normal_model_has_no_secrets(tmp_path):
    assert check_secrets(make_model(tmp_path)).status is Status.PASSED


@pytest.mark.parametrize(("policy", "status"), [(Policy.WARN, Status.WARNED), (Policy.OFF, Status.SKIPPED)])
def test_policies_turn_a_failure_into_a_warning_or_nothing(tmp_path, policy, status):
    ctx = make_model(tmp_path, requirements="mlflow==3.17.2\npandas>=2\n")
    model = FetchedModel(ctx.files, ModelIdentity("m", "m"))
    resolver = Resolver(model.files, tmp_path, tmp_path, None, {}, timeout_s=1)  # resolves nothing here
    options = Options("m", checks={"pinned": policy})
    run = RunContext(options, {}, model, [], tmp_path, "run", {}, resolver, BuildNetwork())
    pinned = next(step for step in StaticStage(run).steps() if step.name == "pinned")
    assert pinned.run().status is status
