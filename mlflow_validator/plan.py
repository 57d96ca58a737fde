"""Decide what will run, before anything runs. Pure: no Docker, no network."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_validator.errors import DockerUnavailableError
from mlflow_validator.results import SERVING_STAGES, Stage
from mlflow_validator.settings import Options


@dataclass(frozen=True)
class PlannedStage:
    stage: Stage
    run: bool
    skip_reason: str = ""


def plan_stages(options: Options, docker_problem: str) -> list[PlannedStage]:
    """One entry per stage, in pipeline order.

    `docker_problem` is empty when an engine answers. A docker stage the user named explicitly, or an alias
    that only a run of every stage may set, makes a missing engine an error (exit 2); the default set only
    skips it, loudly.
    """
    plan = []
    for stage in Stage:
        if stage in SERVING_STAGES and stage not in serving_stages(options.docker.serving):
            continue
        selected = Stage.DOCKER if stage in SERVING_STAGES else stage  # --stages' docker means every serving target
        if selected not in options.stages:
            plan.append(
                PlannedStage(stage, False, f"not selected (--stages {','.join(s.value for s in options.stages)})")
            )
        elif stage in SERVING_STAGES and docker_problem:
            if options.given("stages") or options.write_back.on_pass_set_alias:
                raise DockerUnavailableError(
                    f"the docker stage was asked for but no Docker engine is reachable ({docker_problem})",
                    "start the Docker daemon, or leave docker out of --stages (and --on-pass-set-alias out)",
                )
            plan.append(
                PlannedStage(
                    stage,
                    False,
                    f"no Docker engine reachable ({docker_problem}); start dockerd to run this stage, "
                    "and name it in --stages in CI so that a missing engine fails the job",
                )
            )
        else:
            plan.append(PlannedStage(stage, True))
    return plan


def serving_stages(serving: str) -> tuple[Stage, ...]:
    """The serving targets `--serving` asks for, as the stages that report them."""
    return {"mlflow": (Stage.DOCKER,), "mlserver": (Stage.MLSERVER,), "both": SERVING_STAGES}[serving]
