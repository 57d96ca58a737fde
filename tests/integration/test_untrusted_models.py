"""A model is untrusted code. Models that reach for the host fail naming what they reached for, and
pickles that would run code are read, never loaded. (The hostile probe in every topology: test_cage.py.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, pins
from tests.integration.reports import read_report
from tests.integration.services import Listener


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    serving = Listener()
    yield serving
    serving.close()


@pytest.fixture(scope="module")
def home_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry credential where the runner's user keeps it: ~/.docker/config.json of the job's HOME."""
    path = tmp_path_factory.mktemp("home") / ".docker" / "config.json"
    path.parent.mkdir()
    path.write_text('{"auths": {"registry.example": {"auth": "c2VjcmV0"}}}')
    return path


@pytest.fixture(scope="module")
def reaching_uri(registered, listener: Listener, home_file: Path) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5]})
    for name, config in (("reads-home-file", {"file": str(home_file)}), ("calls-a-service", {"url": listener.url})):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODELS_DIR / "reaching_model.py"),
                signature=infer_signature(frame, frame.assign(offset=1)),
                pip_requirements=pins("mlflow", "pandas", "numpy", "requests"),
                model_config=config,
                registered_model_name=name,
            )
    return registered.tracking_uri


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("reads-home-file", "a path outside its own directory that the validator's cage hides"),
        ("calls-a-service", "the model reaches for the network (host='127.0.0.1', port="),
    ],
)
def test_a_model_that_needs_the_host_fails_naming_what_it_reached_for(reaching_uri, run_cli, tmp_path, name, said):
    requests = tmp_path / "requests"  # no input example: logging one would run the model in this process
    requests.mkdir()
    (requests / "one.json").write_text('{"dataframe_split": {"columns": ["x"], "data": [[0.5]]}}')
    result = run_cli(
        "validate", f"models:/{name}/1", "--tracking-uri", reaching_uri, "--stages", "venv", "--requests", str(requests)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert said in result.stdout
    assert "log" in result.stdout and "artifact" in result.stdout


@pytest.mark.docker
def test_the_serving_container_cannot_call_out_either_and_says_so_as_the_venv_stage_does(
    reaching_uri, run_cli, tmp_path, listener, docker_engine
):
    requests = tmp_path / "requests"
    requests.mkdir()
    (requests / "one.json").write_text('{"dataframe_split": {"columns": ["x"], "data": [[0.5]]}}')
    before = listener.connections
    result = run_cli(
        "validate", "models:/calls-a-service/1", "--tracking-uri", reaching_uri, "--stages", "docker",
        "--requests", str(requests),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  docker answers" in result.stdout
    assert "the model reaches for the network (host='127.0.0.1', port=" in result.stdout
    assert listener.connections == before


PICKLE_CHECKS = ("unsafe-pickle", "code-imports", "environment-variables", "pickle-compatibility", "absolute-paths")


@pytest.fixture(scope="module")
def pickled_models(registered, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Models whose pickles break in one way each, and good ones, logged through the real server.
    The classes are defined here, so cloudpickle pickles them by value, as it does a notebook's."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.pyfunc import PythonModel

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5]})
    signature = infer_signature(frame, frame)  # no input example: logging must not load these models
    requirements = pins("mlflow", "pandas", "numpy", "cloudpickle")
    marker = tmp_path_factory.mktemp("marker") / "the-pickle-ran"

    class RunsACommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class CarriesAPayload(PythonModel):
        def __init__(self):
            self.payload = RunsACommand()

        def predict(self, context, model_input, params=None):
            return model_input

    class ImportsAnUnlistedPackage(PythonModel):
        def predict(self, context, model_input, params=None):
            import tabulate  # no requirement provides it

            return tabulate.tabulate(model_input)

    class ImportsAFlattenedPackage(PythonModel):
        def predict(self, context, model_input, params=None):
            from pkg.helpers import scale  # code_paths logged pkg/helpers.py, flattened to code/helpers.py

            return scale(model_input)

    class ReadsAVariable(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * float(os.environ["SCORING_API_KEY"] != "")

    class HoldsANumpy2Array(PythonModel):
        def __init__(self):
            self.weights = np.arange(3.0)

        def predict(self, context, model_input, params=None):
            return model_input * self.weights[1]

    class ReadsAHostPath(PythonModel):
        def predict(self, context, model_input, params=None):
            with open("/home/alice/lookup.csv") as lookup:
                return model_input.assign(n=len(lookup.read()))

    class ByValueGood(PythonModel):
        def __init__(self):
            self.offset = np.float64(0.5)

        def predict(self, context, model_input, params=None):
            return model_input + self.offset

    package = tmp_path_factory.mktemp("code") / "pkg"
    package.mkdir()
    (package / "helpers.py").write_text("def scale(frame):\n    return frame * 2\n")

    def log(name: str, model: PythonModel, pip_requirements: list[str] = requirements, **kwargs: object) -> None:
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=signature,
                pip_requirements=pip_requirements,
                registered_model_name=name,
                **kwargs,
            )

    log("runs-a-command", CarriesAPayload())
    log("imports-unlisted", ImportsAnUnlistedPackage())
    log("imports-flattened", ImportsAFlattenedPackage(), code_paths=[str(package / "helpers.py")])
    log("reads-a-variable", ReadsAVariable())
    log(
        "numpy-2-under-1",
        HoldsANumpy2Array(),
        pip_requirements=[*pins("mlflow"), "numpy==1.26.4", "cloudpickle==2.2.1"],
    )
    log("reads-a-host-path", ReadsAHostPath())
    log("by-value-good", ByValueGood())
    _log_good_library_models(mlflow, registered.tracking_uri)
    assert not marker.exists(), "logging must not have loaded the pickle"
    return {"tracking_uri": registered.tracking_uri, "marker": str(marker)}


def _log_good_library_models(mlflow, tracking_uri: str) -> None:
    """scikit-learn pickled with pickle and with cloudpickle, and LightGBM's scikit-learn API."""
    import lightgbm
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, target = load_iris(return_X_y=True, as_frame=True)
    classifier = LogisticRegression(max_iter=300).fit(features, target)
    sklearn_requirements = pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")
    for name, serialization in (("sklearn-pickle", "pickle"), ("sklearn-cloudpickle", "cloudpickle")):
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                classifier,
                name="model",
                serialization_format=serialization,
                pip_requirements=sklearn_requirements,
                registered_model_name=name,
            )
    booster = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(features, target)
    with mlflow.start_run():
        mlflow.lightgbm.log_model(
            booster, name="model", pip_requirements=[*sklearn_requirements, *pins("lightgbm")],
            registered_model_name="lightgbm-model",
        )  # fmt: skip


def static_run(run_cli, models: dict[str, str], name: str, *flags: str):
    result = run_cli("validate", f"models:/{name}/1", "--tracking-uri", models["tracking_uri"], *flags)
    return result, read_report(result.scratch.parent / "mlflow-validator-report" / "junit.xml")


def test_a_pickle_that_runs_a_command_is_reported_and_the_command_never_runs(pickled_models, run_cli):
    result, report = static_run(run_cli, pickled_models, "runs-a-command", "--stages", "static,venv")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["static"]["unsafe-pickle"] == "failure"
    assert f"system('touch {pickled_models['marker']}')" in result.stdout
    assert report["venv"] == {"venv": "skipped"}  # nothing loads a model the static stage refused
    assert not Path(pickled_models["marker"]).exists()


@pytest.mark.parametrize(
    ("name", "check", "said"),
    [
        ("imports-unlisted", "code-imports", "python_model.pkl (pickled code) imports tabulate"),
        ("imports-flattened", "code-imports", 'log code_paths=["pkg"]'),
        ("reads-a-variable", "environment-variables", "env: {pass: [SCORING_API_KEY]}"),
        ("numpy-2-under-1", "pickle-compatibility", "install numpy 1.26.4, which cannot unpickle it"),
        ("numpy-2-under-1", "pickle-compatibility", "requirements install cloudpickle 2.2.1"),
        ("reads-a-host-path", "absolute-paths", "/home/alice/lookup.csv"),
    ],
)
def test_each_pickled_defect_is_found_in_the_static_stage(pickled_models, run_cli, name, check, said):
    result, report = static_run(run_cli, pickled_models, name, "--stages", "static")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["static"][check] == "failure", result.stdout
    assert said in result.stdout
    assert report["static"]["unsafe-pickle"] == "passed"


@pytest.mark.parametrize(
    "name", ["by-value-good", "sklearn-pickle", "sklearn-cloudpickle", "lightgbm-model", "skops-example"]
)
def test_good_models_raise_no_pickle_finding(pickled_models, run_cli, name):
    if name == "skops-example":  # the README's first model, scikit-learn in skops' format
        result = run_cli(
            "validate", str(Path(__file__).parents[2] / "examples" / "iris-classifier"), "--stages", "static"
        )
        report = read_report(result.scratch.parent / "mlflow-validator-report" / "junit.xml")
    else:
        result, report = static_run(run_cli, pickled_models, name, "--stages", "static")
    assert result.returncode in (0, 1), result.stdout + result.stderr  # logged without an example, on purpose
    for check in PICKLE_CHECKS:
        assert report["static"][check] in ("passed", "skipped"), (check, result.stdout)
