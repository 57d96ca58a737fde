"""The docker stage's steps: generate, build, start, answer every sample request, then the checks over
the answers (`answers.py`), the venv's answers among them. `close()` removes what was made."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import requests

from mlflow_validator import commands
from mlflow_validator.expectations.answers import (
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
    reach_hint,
    undeclared_variable,
)
from mlflow_validator.expectations.packages import check_parity
from mlflow_validator.expectations.requests import SampleRequest
from mlflow_validator.expectations.team import ChecksContext, run_team_checks
from mlflow_validator.outputs import ANSWERS_DIR, IMAGE_RECORD
from mlflow_validator.results import Outcome, Stage, Status, failed, passed, skipped
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker import LABEL
from mlflow_validator.stages.docker.builder import DependencyImage, ImageBuilder
from mlflow_validator.stages.docker.container import (
    Container,
    NotServing,
    python_tracebacks,
    running_container,
    wait_until_serving,
)
from mlflow_validator.stages.docker.engine import Docker, docker_env
from mlflow_validator.stages.docker.image import ServingDockerfile, keep
from mlflow_validator.stages.endpoint import BadAnswer, read_bounded
from mlflow_validator.steps import Step, steps_for

T = TypeVar("T")


@dataclass(frozen=True)
class DockerPaths:
    context: Path  # MLflow's generated context; the model image is built from it
    answers: Path  # in the output directory: kept next to the report
    build_log: Path
    image_record: Path  # image.json: the kept image's tag, ID and digest


class DockerStage:
    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.model_dir = run.model.directory
        self.requests: list[SampleRequest] = []
        self.answers = StageAnswers("container")
        self.options = run.options
        self.paths = DockerPaths(
            run.workdir / "docker-context",
            run.output_dir / ANSWERS_DIR / "container",
            run.output_dir / "docker-build.log",
            run.output_dir / IMAGE_RECORD,
        )
        self.run_id = run.run_id
        self.labels = {LABEL: run.run_id}
        self.tag = f"mlflow-validator/model:{run.run_id}"
        # `docker run --env NAME` takes the value from the CLI's environment, so none is on a command line.
        self.docker = Docker(run.options.docker.cli, {**docker_env(run.env), **run.options.model_env})
        self.builder = ImageBuilder(run, self.docker, self.paths.context, self.paths.build_log)
        self.container: Container | None = None
        self.kept_id = ""  # the image --image-tag keeps: the cleanup leaves it alone
        self.early: tuple[Future[ServingDockerfile], Future[DependencyImage]] | None = None
        self.cleanup = ExitStack()
        self.cleanup.callback(self.remove_what_this_run_made)

    @property
    def venv_answers(self) -> StageAnswers | None:
        return self.run.answers.get(Stage.VENV)  # None when the venv stage did not run

    def start_early(self) -> None:
        """Generate the Dockerfile and build the dependency image on a worker thread while the venv stage
        runs; the stage's own steps then wait for that work. Closing the stage stops it."""
        abort = threading.Event()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-early")

        def abortable(work: Callable[[], T]) -> Callable[[], T]:
            def run() -> T:
                with commands.abortable(abort):
                    return work()

            return run

        def dependencies_once_generated() -> DependencyImage:
            generated.result()  # a failed generation fails this too
            return self.builder.dependencies(during=" during the venv stage")

        generated = worker.submit(abortable(self.builder.generate))
        self.early = (generated, worker.submit(abortable(dependencies_once_generated)))
        self.cleanup.callback(worker.shutdown, wait=True, cancel_futures=True)
        self.cleanup.callback(abort.set)  # callbacks run last in, first out: the abort comes first

    def resume(self, run: RunContext) -> DockerStage:
        """The stage started early, given what the stages before it answered."""
        self.run = self.builder.run = run
        return self

    def steps(self) -> list[Step]:
        implementations = {
            "generate-dockerfile": self.generate_dockerfile,
            "build-image": self.build_image,
            "start-container": self.start_container,
            "package-parity": self.package_parity,
            "answers": self.answer_requests,
            "keep-image": self.keep_image,
        }
        return steps_for(Stage.DOCKER, implementations | self._checks(), self.options.policy)

    def answered(self) -> StageAnswers | None:
        return self.answers if self.answers.answers else None

    def close(self) -> None:
        self.cleanup.close()

    def remove_what_this_run_made(self) -> None:
        """Every container and image with this run's label, and nothing else: a neighbour's build, the
        shared dependency images and the image --image-tag kept are never touched."""
        if self.options.keep:
            return
        if self.kept_id:  # the image stays under the user's tag only
            self.docker.run("rmi", self.tag, timeout_s=60, check=False)
        label = f"label={LABEL}={self.run_id}"
        for listing, removal in ((("ps", "--all"), ("rm", "--force", "--volumes")), (("images",), ("rmi",))):
            found = self.docker.run(*listing, "--quiet", "--no-trunc", "--filter", label, timeout_s=60, check=False)
            if ids := sorted(set(found.output.split()) - {self.kept_id}):
                self.docker.run(*removal, *ids, timeout_s=120, check=False)

    def generate_dockerfile(self) -> Outcome:
        if self.early:
            dockerfile = self.early[0].result(timeout=self.options.timeouts.docker_build)
        else:
            dockerfile = self.builder.generate()
        return passed(f"FROM {dockerfile.base_image}", (self.paths.context / "Dockerfile").read_text())

    def build_image(self) -> Outcome:
        """The dependency image (built during the venv stage when it started early); then the model image
        on top of it."""
        if self.early:
            dependencies = self.early[1].result(timeout=self.options.timeouts.docker_build)
        else:
            dependencies = self.builder.dependencies()
        if dependencies.failure:
            return dependencies.failure
        assert self.builder.dockerfile is not None
        model_dockerfile = self.builder.dockerfile.model(dependencies.tag)
        built = self.builder.build(self.paths.context, model_dockerfile, self.tag, self.labels)
        if not built.ok:
            return self.builder.failure(built)
        unbuilt = [platform for platform in self.options.platforms if platform != "linux/amd64"]
        not_here = f"; {', '.join(unbuilt)}: resolved by the static stage, not built here" if unbuilt else ""
        return passed(f"{self.tag} built in {built.duration_s:.0f} s; dependencies: {dependencies.how}{not_here}")

    def start_container(self) -> Outcome:
        memory_mb = self.options.docker.memory_mb
        self.container = self.cleanup.enter_context(
            running_container(
                self.docker, self.tag, f"mlflow-validator-{self.run_id}", self.labels, memory_mb,
                list(self.options.model_env), self.options.keep,
            )
        )  # fmt: skip
        budget = self.options.budgets.max_load_seconds
        limit, limit_name = (
            (budget, "budgets.max_load_seconds")
            if budget
            else (self.options.timeouts.container_start, "timeouts.container_start")
        )
        try:
            waited = wait_until_serving(self.container, limit, limit_name, memory_mb)
        except NotServing as exc:
            if variable := undeclared_variable(exc.logs):
                return failed(declare_hint(variable), commands.tail(exc.logs))
            return failed(reach_hint(python_tracebacks(exc.logs)) or exc.message, commands.tail(exc.logs))
        self.answers.load_seconds = waited
        return passed(
            f"/ping answered {waited:.1f} s after the start; the container has no network and publishes nothing "
            "(reached through docker exec)"
        )

    def package_parity(self) -> Outcome:
        assert self.container is not None
        self.answers.installed = self.container.installed()
        if self.venv_answers is None:
            return Outcome(Status.SKIPPED, "the venv stage did not run, so there is nothing to compare with")
        if not self.venv_answers.installed:  # no interpreter of the model's on the runner
            return Outcome(Status.SKIPPED, "the venv stage ran the model in this image's dependency layer: the same")
        return check_parity(self.venv_answers.installed, self.answers.installed)

    def answer_requests(self) -> Outcome:
        """POST every sample request to /invocations, then repeat the first to measure latency."""
        assert self.container is not None
        self.requests = self.run.requests() + (self.venv_answers.generated if self.venv_answers else [])
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
            logs = self.container.logs()
            bodies = "\n".join(answer.body for answer in self.answers.answers.values())
            return replace(
                outcome,
                message=reach_hint(f"{bodies}\n{python_tracebacks(logs)}") or outcome.message,
                details=f"{outcome.details}\n--- container log ---\n{commands.tail(logs)}",
            )
        return replace(outcome, message=f"{outcome.message}; answers saved to {self.paths.answers}")

    def _post(self, request: SampleRequest) -> Answer:
        assert self.container is not None
        started = time.perf_counter()
        try:
            with self.container.session.post(
                f"{self.container.url}/invocations",
                data=request.body.encode(),
                headers={"Content-Type": request.content_type},
                timeout=self.options.timeouts.request,
                stream=True,
            ) as response:
                text = read_bounded(response)
        except BadAnswer as exc:
            problem = f"the container answered something that is not an answer: {exc}"
            return Answer(NO_ANSWER, problem, time.perf_counter() - started)
        except requests.RequestException as exc:
            state = "running" if self.container.running() else "exited"
            problem = f"{type(exc).__name__} within {self.options.timeouts.request:g} s; the container has {state}"
            return Answer(NO_ANSWER, problem, time.perf_counter() - started)
        return Answer(response.status_code, text, time.perf_counter() - started)

    def keep_image(self) -> Outcome:
        tag = self.options.docker.image_tag
        if not tag:
            return skipped("no --image-tag: the image is removed with the run")
        kept = keep(self.docker, self.tag, tag, self.options.docker.push, self.options.timeouts.docker_push)
        self.kept_id = kept.id
        self.paths.image_record.write_text(json.dumps(vars(kept), indent=2) + "\n")
        pushed = f"; pushed as {kept.digest}" if kept.digest else ""
        return passed(f"kept as {tag} ({kept.id}){pushed}", properties=kept.as_properties())

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
        return over_answers(self, checks) | {"team-checks": self.team_checks}

    def team_checks(self) -> Outcome:
        if self.options.checks_dir is None:
            return skipped("no team checks (--checks DIR or `checks_dir:` in the config file)")
        assert self.container is not None
        model = self.run.model
        context = ChecksContext(
            Stage.DOCKER,
            self.container.url,
            None,
            model.directory,
            model.identity,
            model.tags,
            self.options.timeouts.request,
        )
        return run_team_checks(context, self.options, self.run.env, self.run.workdir / "docker-team-checks")

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
