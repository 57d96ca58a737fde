import pytest

from mlflow_validator.errors import DockerUnavailableError
from mlflow_validator.plan import plan_stages
from mlflow_validator.results import CheckResult, ModelIdentity, Stage, Status, ValidationReport
from mlflow_validator.settings import Options
from mlflow_validator.settings.options import DockerSettings


def test_all_stages_run_when_docker_answers():
    assert all(p.run for p in plan_stages(Options("m"), docker_problem=""))


def test_unselected_stages_are_skipped_with_the_reason():
    plan = plan_stages(Options("m", stages=(Stage.STATIC,), sources={"stages": "flag --stages"}), "")
    assert [(p.stage, p.run) for p in plan] == [(Stage.STATIC, True), (Stage.VENV, False), (Stage.DOCKER, False)]
    assert "--stages static" in plan[1].skip_reason


def test_missing_engine_skips_the_default_docker_stage_and_says_how_to_enable_it():
    docker = plan_stages(Options("m"), "connection refused")[-1]
    assert not docker.run
    assert "start dockerd" in docker.skip_reason


def test_missing_engine_is_an_error_when_docker_was_asked_for():
    with pytest.raises(DockerUnavailableError):
        plan_stages(Options("m", sources={"stages": "flag --stages"}), "connection refused")


@pytest.mark.parametrize(
    ("serving", "serving_stages"),
    [("mlflow", [Stage.DOCKER]), ("mlserver", [Stage.MLSERVER]), ("both", [Stage.MLSERVER, Stage.DOCKER])],
)
def test_serving_picks_the_serving_targets_and_a_missing_engine_skips_each(serving, serving_stages):
    options = Options("m", docker=DockerSettings(serving=serving))
    assert [p.stage for p in plan_stages(options, "")] == [Stage.STATIC, Stage.VENV, *serving_stages]
    assert all("start dockerd" in p.skip_reason for p in plan_stages(options, "connection refused")[2:])


def test_a_pass_of_the_stages_serving_asked_for_is_complete():
    def report(*stages: Stage) -> ValidationReport:
        checks = [CheckResult(stage, "answers", Status.PASSED, 0.1) for stage in stages]
        return ValidationReport(ModelIdentity("models:/m/1", "m", "1"), checks)

    assert report(Stage.STATIC, Stage.VENV, Stage.MLSERVER).verdict_name == "passed"
    assert report(Stage.STATIC, Stage.VENV, Stage.DOCKER, Stage.MLSERVER).verdict_name == "passed"
    assert report(Stage.STATIC, Stage.VENV).verdict_name == "partial"
