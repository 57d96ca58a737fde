import pytest

from mlflow_validator.errors import DockerUnavailableError
from mlflow_validator.plan import plan_stages
from mlflow_validator.results import Stage
from mlflow_validator.settings import Options


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
