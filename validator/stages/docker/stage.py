"""The docker stage's steps: generate, build, start, answer every sample request, then the checks over
the answers (`answers.py`), the venv's answers among them. `close()` removes what was made."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from validator import commands
from validator.expectations.answers import (
    NO_ANSWER,
    Answer,
    AnswerCheck,
    StageAnswers,
    check_answers,
    check_expected_responses,
    check_output_contract,
    check_rejections,
    check_same_answers,
    check_timing,
    declare_hint,
    over_answers,
    undeclared_variable,
)
from validator.expectations.requests import SampleRequest
from validator.results import Outcome, Stage, Status, failed, passed
from validator.stages.context import RunContext
from validator.stages.docker.container import Container, ContainerExited, running_container, wait_until_ready
from validator.stages.docker.engine import docker_env
from validator.stages.docker.image import add_build_settings, build_image, generate_context, remove_image
from validator.steps import Step, steps_for


@dataclass(frozen=True)
class DockerPaths:
    context: Path
    answers: Path  # in the output directory: kept next to the report
    build_log: Path


class DockerStage:
    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.model_dir = run.model.directory
        self.venv_answers = run.answers.get(Stage.VENV)  # None when the venv stage did not run
        self.requests: list[SampleRequest] = []
        self.answers = StageAnswers("container")
        self.options = run.options
        self.paths = DockerPaths(
            run.workdir / "docker-context",
            run.output_dir / "answers" / "container",
            run.output_dir / "docker-build.log",
        )
        self.run_id = run.run_id
        self.tag = f"mlflow-validator/model:{run.run_id}"
        self.docker_env = docker_env(run.env)
        # `docker run -e NAME` takes the value from the CLI's environment, so none is on a command line.
        self.run_env = {**self.docker_env, **run.options.model_env}
        self.generator_env = {**self.docker_env, "MLFLOW_TRACKING_URI": str(self.paths.context / "mlruns")}
        self.cleanup = ExitStack()
        self.container: Container | None = None

    def steps(self) -> list[Step]:
        implementations = {
            "generate-dockerfile": self.generate_dockerfile,
            "build-image": self.build,
            "start-container": self.start_container,
            "answers": self.answer_requests,
        }
        return steps_for(Stage.DOCKER, implementations | self._checks(), self.options.policy)

    def answered(self) -> StageAnswers | None:
        return self.answers if self.answers.answers else None

    def close(self) -> None:
        self.cleanup.close()

    def generate_dockerfile(self) -> Outcome:
        dockerfile = generate_context(self.model_dir, self.paths.context, self.generator_env)
        add_build_settings(dockerfile, self.options.build, self.options.constraints)
        base = next(line for line in dockerfile.read_text().splitlines() if line.startswith("FROM "))
        return passed(base, dockerfile.read_text())

    def build(self) -> Outcome:
        if not self.options.keep:
            self.cleanup.callback(remove_image, self.tag, self.docker_env)
        result = build_image(
            self.paths.context,
            self.tag,
            self.run_id,
            self.options.build,
            self.docker_env,
            self.options.timeouts.docker_build,
        )
        self.paths.build_log.parent.mkdir(parents=True, exist_ok=True)
        self.paths.build_log.write_text(result.output)
        if not result.ok:
            return failed(
                f"docker build failed: {commands.last_line(result.output)}. The full log is in {self.paths.build_log}; "
                "a requirement that installs locally but not here usually needs a pin or a system package",
                result.tail(),
            )
        return passed(f"{self.tag} built in {result.duration_s:.0f} s")

    def start_container(self) -> Outcome:
        name = f"mlflow-validator-{self.run_id}"
        self.container = self.cleanup.enter_context(
            running_container(
                self.tag, name, self.run_id, self.run_env, self.options.keep, list(self.options.model_env)
            )
        )
        try:
            waited = wait_until_ready(self.container, self.options.timeouts.container_start)
        except ContainerExited:
            logs = self.container.logs()
            if variable := undeclared_variable(logs):
                return failed(declare_hint(variable), commands.tail(logs))
            return failed(
                "the container exited before answering /ping: the scoring server could not start", commands.tail(logs)
            )
        except TimeoutError as exc:
            return failed(f"{exc}: the scoring server did not come up", commands.tail(self.container.logs()))
        self.answers.load_seconds = waited
        return passed(f"{self.container.url}/ping answered after {waited:.1f} s (the server loads the model first)")

    def answer_requests(self) -> Outcome:
        """POST every sample request to /invocations, then repeat the first to measure latency."""
        assert self.container is not None
        self.requests = self.run.requests()
        for request in self.requests:
            self.answers.answers[request.name] = self._post(request)
        if self.container.running():
            first = self.requests[0]
            self.answers.latency_seconds = [
                self._post(first).seconds for _ in range(self.options.requests.latency_samples)
            ]
        self.answers.save(self.paths.answers)
        outcome = check_answers(self.requests, self.answers)
        if outcome.status is Status.FAILED:
            return replace(
                outcome, details=f"{outcome.details}\n--- container log ---\n{commands.tail(self.container.logs())}"
            )
        return replace(outcome, message=f"{outcome.message}; answers saved to {self.paths.answers}")

    def _post(self, request: SampleRequest) -> Answer:
        assert self.container is not None
        started = time.perf_counter()
        try:
            response = requests.post(
                f"{self.container.url}/invocations",
                data=request.body.encode(),
                headers={"Content-Type": request.content_type},
                timeout=self.options.timeouts.request,
            )
        except requests.RequestException as exc:
            state = "running" if self.container.running() else "exited"
            problem = f"{type(exc).__name__} within {self.options.timeouts.request:g} s; the container has {state}"
            return Answer(NO_ANSWER, problem, time.perf_counter() - started)
        return Answer(response.status_code, response.text, time.perf_counter() - started)

    def _checks(self) -> dict[str, Callable[[], Outcome]]:
        tolerance = self.options.tolerance
        checks: dict[str, AnswerCheck] = {
            "rejects-invalid-input": check_rejections,
            "output-contract": lambda requests, answers: check_output_contract(
                requests, answers, self.run.model.files.mlmodel.signature.outputs
            ),
            "matches-venv": self.matches_venv,
            "expected-responses": lambda requests, answers: check_expected_responses(requests, answers, tolerance),
            "timing": lambda requests, answers: check_timing(requests, answers, self.options.budgets),
        }
        return over_answers(self, checks)

    def matches_venv(self, requests: list[SampleRequest], answers: StageAnswers) -> Outcome:
        if self.venv_answers is None:
            return Outcome(Status.SKIPPED, "the venv stage did not run, so there is nothing to compare with")
        outcome = check_same_answers(requests, self.venv_answers, answers, self.options.tolerance)
        if outcome.status is Status.FAILED:
            hint = (
                " The environments differ: rerun with --keep and compare "
                "`docker run --rm --entrypoint pip <image> freeze` with the venv's"
            )
            return replace(outcome, message=outcome.message + hint)
        return outcome
