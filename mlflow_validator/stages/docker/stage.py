"""The docker stage's steps for one serving target (`serving/`): generate, build, start, answer every sample
request, then the checks over the answers (`answers.py`), the venv's answers among them. `close()` removes
what was made."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from mlflow_validator import commands
from mlflow_validator.egress.session import Cost, Egress, check_egress, first_refusal, opened_egress, refusal_first
from mlflow_validator.expectations.answers import (
    NO_ANSWER,
    Answer,
    StageAnswers,
    check_answers,
    check_same_answers,
    declare_hint,
    over_answers,
    reach_hint,
    shared_checks,
    undeclared_variable,
)
from mlflow_validator.expectations.chat import chat_contract
from mlflow_validator.expectations.packages import check_parity
from mlflow_validator.expectations.requests import SampleRequest
from mlflow_validator.expectations.team import ChecksContext, run_team_checks
from mlflow_validator.isolation import secrets_of
from mlflow_validator.outputs import ANSWERS_DIR, IMAGE_RECORD
from mlflow_validator.results import Outcome, Stage, Status, failed, passed, skipped
from mlflow_validator.serving.container import (
    Container,
    NotServing,
    Readiness,
    python_tracebacks,
    running_container,
    wait_until_serving,
)
from mlflow_validator.serving.endpoint import Endpoint
from mlflow_validator.serving.scoring_server import SCORING_SERVER
from mlflow_validator.serving.target import ServingLayer, ServingTarget
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker import LABEL, TARGET_LABEL
from mlflow_validator.stages.docker.builder import DependencyImage, ImageBuilder
from mlflow_validator.stages.docker.engine import Docker, docker_env
from mlflow_validator.stages.docker.image import ServingDockerfile, keep
from mlflow_validator.steps import Step, steps_for

T = TypeVar("T")


@dataclass(frozen=True)
class DockerPaths:
    context: Path  # MLflow's generated context; the model image is built from it
    answers: Path  # in the output directory: kept next to the report
    build_log: Path
    image_record: Path  # image.json: the kept image's tag, ID and digest


class DockerStage:
    """One serving target's stage: MLflow's scoring server reports as `docker`, MLServer as `mlserver`."""

    def __init__(self, run: RunContext, target: ServingTarget = SCORING_SERVER) -> None:
        self.run = run
        self.target = target
        self.model_dir = run.model.directory
        self.requests: list[SampleRequest] = []
        self.answers = StageAnswers(target.answers)
        self.options = run.options
        self.paths = DockerPaths(
            run.workdir / f"{target.files}-context",
            run.output_dir / ANSWERS_DIR / target.answers,
            run.output_dir / f"{target.files}-build.log",
            run.output_dir / IMAGE_RECORD,
        )
        self.run_id = run.run_id
        # The target's own label too: its cleanup must not remove what another target's stage kept.
        self.labels = {LABEL: run.run_id, TARGET_LABEL: target.name}
        self.tag = f"{target.repository}:{run.run_id}"
        self.layer: ServingLayer | None = None  # what the target installs besides the lock, once built
        self.endpoint: Endpoint | None = None
        # `docker run --env NAME` takes the value from the CLI's environment, so none is on a command line.
        self.docker = Docker(run.options.docker.cli, {**docker_env(run.env), **run.options.model_env})
        self.builder = ImageBuilder(run, self.docker, self.paths.context, self.paths.build_log)
        self.container: Container | None = None
        self.egress: Egress | None = None  # the proxy of sandbox.egress, once the container starts
        self.costs: list[Cost] = []  # upstream calls per request
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
        }
        if self.target.promoted:
            implementations |= {"keep-image": self.keep_image, "team-checks": self.team_checks}
        implementations["egress"] = self.check_egress
        return steps_for(self.target.stage, implementations | self._checks(), self.options.policy)

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
        labels = [arg for name, value in self.labels.items() for arg in ("--filter", f"label={name}={value}")]
        for listing, removal in ((("ps", "--all"), ("rm", "--force", "--volumes")), (("images",), ("rmi",))):
            found = self.docker.run(*listing, "--quiet", "--no-trunc", *labels, timeout_s=60, check=False)
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
        layer = ""
        if self.target.layer:
            added = self.target.layer(self.run, self.paths.context)
            if isinstance(added, Outcome):
                return added
            self.layer, layer = added, f"; {added.described}"
        dockerfile = self.target.dockerfile(self.builder.dockerfile, dependencies.tag)
        built = self.builder.build(self.paths.context, dockerfile, self.tag, self.labels)
        if not built.ok:
            return self.builder.failure(built)
        unbuilt = [platform for platform in self.options.platforms if platform != "linux/amd64"]
        not_here = f"; {', '.join(unbuilt)}: resolved by the static stage, not built here" if unbuilt else ""
        return passed(
            f"{self.tag} built in {built.duration_s:.0f} s; dependencies: {dependencies.how}{layer}{not_here}"
        )

    def start_container(self) -> Outcome:
        memory_mb = self.options.docker.memory_mb
        name = f"mlflow-validator-{self.run_id}-{self.target.name}"
        if self.options.egress:
            self.egress = self.cleanup.enter_context(opened_egress(self.options.egress))
        self.container = container = self.cleanup.enter_context(
            running_container(
                self.docker,
                self.tag,
                name,
                self.labels,
                memory_mb,
                list(self.options.model_env),
                self.options.keep,
                self.target.capabilities,
                env=self.egress.env() if self.egress else None,
            )
        )
        if self.egress:
            self.cleanup.enter_context(self.egress.in_container(self.docker, name))
        budget = self.options.budgets.max_load_seconds
        limit, limit_name = (
            (budget, "budgets.max_load_seconds")
            if budget
            else (self.options.timeouts.container_start, "timeouts.container_start")
        )
        ready = Readiness(self.target.ready_path, self.target.server, limit, limit_name, memory_mb)
        try:
            waited = wait_until_serving(container, ready)
        except NotServing as exc:
            if refused := first_refusal(self.egress):
                return failed(refused, commands.tail(exc.logs))
            if variable := undeclared_variable(exc.logs):
                return failed(declare_hint(variable), commands.tail(exc.logs))
            return failed(reach_hint(python_tracebacks(exc.logs)) or exc.message, commands.tail(exc.logs))
        self.answers.load_seconds = waited
        self.endpoint = Endpoint(
            container.url, self.options.timeouts.request, self.target.question, self.target.answer, container.session
        )
        way_out = "its only way out is the validator's proxy" if self.egress else "it reaches nothing"
        return passed(
            f"{self.target.server}: {ready.path} answered {waited:.1f} s after the start; the container has no "
            f"network and publishes nothing (reached through docker exec); {way_out}"
        )

    def package_parity(self) -> Outcome:
        assert self.container is not None
        installed = self.container.installed()
        if installed is None:
            return failed("the image's python could not list its distributions: its interpreter fails to start")
        self.answers.installed = installed
        if self.venv_answers is None:
            return Outcome(Status.SKIPPED, "the venv stage did not run, so there is nothing to compare with")
        if not self.venv_answers.installed:  # no interpreter of the model's on the runner
            return Outcome(Status.SKIPPED, "the venv stage ran the model in the dependency image this one is built on")
        installed_by_server = set(self.layer.pins) if self.layer else set()
        return check_parity(
            self.venv_answers.installed, self.answers.installed, self.target.server, installed_by_server,
            self.run.model.files.requirement_names,
        )  # fmt: skip

    def answer_requests(self) -> Outcome:
        """Ask every sample request in the target's protocol, then repeat the first to measure latency."""
        assert self.container is not None
        self.requests = self.run.requests() + (self.venv_answers.generated if self.venv_answers else [])
        for request in self.requests:
            before = self.egress.proxy.snapshot() if self.egress else None
            self.answers.answers[request.name] = self._post(request)
            if self.egress and before:
                self.costs.append(Cost.between(request.name, before, self.egress.proxy.snapshot()))
        if self.container.running():
            first = self.requests[0]
            self.answers.latency_seconds = [
                self._post(first).seconds for _ in range(self.options.requests.latency_samples)
            ]
        self.answers.save(self.paths.answers, secrets_of(self.options.model_env))
        outcome = refusal_first(check_answers(self.requests, self.answers), self.egress)
        if outcome.status is Status.FAILED and not first_refusal(self.egress):
            logs = self.container.logs()
            bodies = "\n".join(answer.body for answer in self.answers.answers.values())
            unserved = f". {self.target.unserved_hint}" if self.target.unserved_hint and self._venv_answered() else ""
            return replace(
                outcome,
                message=reach_hint(f"{bodies}\n{python_tracebacks(logs)}") or outcome.message + unserved,
                details=f"{outcome.details}\n--- container log ---\n{commands.tail(logs)}",
            )
        return replace(outcome, message=f"{outcome.message}; answers saved to {self.paths.answers}")

    def _venv_answered(self) -> bool:
        """Whether the venv answered 200 a request this target did not: the server's limit, not the model's."""
        venv = self.venv_answers.answers if self.venv_answers else {}
        return any(
            answer.status != 200 and name in venv and venv[name].status == 200
            for name, answer in self.answers.answers.items()
        )

    def _post(self, request: SampleRequest) -> Answer:
        """The endpoint's answer; when none came, whether the container still runs."""
        assert self.endpoint is not None and self.container is not None
        answer = self.endpoint.invoke(request.body, request.content_type)
        if answer.status != NO_ANSWER:
            return answer
        state = "running" if self.container.running() else "exited"
        return replace(answer, body=f"{answer.body}; the container has {state}")

    def keep_image(self) -> Outcome:
        tag = self.options.docker.image_tag
        if not tag:
            return skipped("no --image-tag: the image is removed with the run")
        if failed := [stage.value for stage in self.run.failed_stages]:  # MLServer's stage runs before this one
            return skipped(f"not kept: the {', '.join(failed)} stage failed")
        kept = keep(self.docker, self.tag, tag, self.options.docker.push, self.options.timeouts.docker_push)
        self.kept_id = kept.id
        self.paths.image_record.write_text(json.dumps(vars(kept), indent=2) + "\n")
        pushed = f"; pushed as {kept.digest}" if kept.digest else ""
        return passed(f"kept as {tag} ({kept.id}){pushed}", properties=kept.as_properties())

    def _checks(self) -> dict[str, Callable[[], Outcome]]:
        checks = shared_checks(lambda: self.run.model.files.mlmodel, self.options)
        checks["matches-venv"] = self.matches_venv
        return over_answers(self, checks)

    def check_egress(self) -> Outcome:
        if self.options.egress and self.container is None:
            return skipped("the container did not start")
        return check_egress(self.egress, self.costs, self.options.budgets.max_upstream_calls)

    def team_checks(self) -> Outcome:
        if self.options.checks_dir is None:
            return skipped("no team checks (--checks DIR or `checks_dir:` in the config file)")
        assert self.container is not None
        model = self.run.model
        context = ChecksContext(
            self.target.stage,
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
        words_vary = chat_contract(self.run.model.files.mlmodel) is not None
        outcome = check_same_answers(requests, self.venv_answers, answers, self.options.tolerance, words_vary)
        if outcome.status is Status.FAILED:
            hint = (
                f" {self.target.server} answers otherwise, or the environments differ: rerun with --keep and compare "
                "`docker run --rm --entrypoint pip <image> freeze` with the venv's"
            )
            return replace(outcome, message=outcome.message + hint)
        return outcome
