"""The docker stage's steps: generate, build, start, invoke, compare. `close()` removes what was made."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import requests

from validator import commands
from validator.compare import compare, describe
from validator.docker.container import Container, ContainerExited, running_container, wait_until_ready
from validator.docker.engine import docker_env
from validator.docker.image import add_build_settings, build_image, generate_context, remove_image
from validator.model_files import read_mlmodel, serving_example_path
from validator.options import Options
from validator.results import Outcome, Status, failed, passed
from validator.steps import Step


@dataclass(frozen=True)
class DockerPaths:
    context: Path
    response: Path  # in the output directory: kept next to the report
    build_log: Path
    venv_predictions: Path | None  # None when the venv stage did not run


class DockerStage:
    def __init__(
        self, model_dir: Path, options: Options, paths: DockerPaths, run_id: str, env: Mapping[str, str]
    ) -> None:
        self.model_dir = model_dir
        self.options = options
        self.paths = paths
        self.run_id = run_id
        self.tag = f"mlflow-validator/model:{run_id}"
        self.docker_env = docker_env(env)
        self.generator_env = {**docker_env(env), "MLFLOW_TRACKING_URI": str(paths.context / "mlruns")}
        self.cleanup = ExitStack()
        self.container: Container | None = None

    def steps(self) -> list[Step]:
        return [
            Step("generate-dockerfile", self.generate_dockerfile),
            Step("build-image", self.build),
            Step("start-container", self.start_container),
            Step("invoke-input-example", self.invoke_input_example),
            Step("matches-venv-predictions", self.matches_venv_predictions),
        ]

    def close(self) -> None:
        self.cleanup.close()

    def generate_dockerfile(self) -> Outcome:
        dockerfile = generate_context(self.model_dir, self.paths.context, self.generator_env)
        add_build_settings(dockerfile, self.options.network, self.options.constraints)
        base = next(line for line in dockerfile.read_text().splitlines() if line.startswith("FROM "))
        return passed(base, dockerfile.read_text())

    def build(self) -> Outcome:
        if not self.options.keep:
            self.cleanup.callback(remove_image, self.tag, self.docker_env)
        result = build_image(
            self.paths.context,
            self.tag,
            self.run_id,
            self.options.network,
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
            running_container(self.tag, name, self.run_id, self.docker_env, self.options.keep)
        )
        try:
            waited = wait_until_ready(self.container, self.options.timeouts.container_start)
        except ContainerExited:
            return failed(
                "the container exited before answering /ping: the scoring server could not start",
                commands.tail(self.container.logs()),
            )
        except TimeoutError as exc:
            return failed(f"{exc}: the scoring server did not come up", commands.tail(self.container.logs()))
        return passed(f"{self.container.url}/ping answered after {waited:.1f} s")

    def invoke_input_example(self) -> Outcome:
        assert self.container is not None
        request = serving_example_path(self.model_dir, read_mlmodel(self.model_dir))
        try:
            response = requests.post(
                f"{self.container.url}/invocations",
                data=request.read_bytes(),
                headers={"Content-Type": "application/json"},
                timeout=self.options.timeouts.request,
            )
        except requests.RequestException as exc:
            return failed(f"/invocations did not answer: {exc}", commands.tail(self.container.logs()))
        self.paths.response.parent.mkdir(parents=True, exist_ok=True)
        self.paths.response.write_text(response.text)
        if response.status_code != 200:
            return failed(
                f"/invocations answered {response.status_code} to the logged input example: {response.text[:300]}. "
                f"Reproduce with `curl -d @{request.name} -H 'Content-Type: application/json' <url>/invocations`",
                commands.tail(self.container.logs()),
            )
        return passed(f"200 in {response.elapsed.total_seconds() * 1000:.0f} ms; saved to {self.paths.response}")

    def matches_venv_predictions(self) -> Outcome:
        if self.paths.venv_predictions is None or not self.paths.venv_predictions.is_file():
            return Outcome(Status.SKIPPED, "the venv stage did not run, so there is nothing to compare with")
        expected = json.loads(self.paths.venv_predictions.read_text())
        actual = json.loads(self.paths.response.read_text())
        differences = compare(expected, actual, self.options.tolerance)
        if differences:
            summary, listing = describe(differences, "venv", "container")
            return failed(
                f"the container answers differently from the fresh virtualenv: {summary}. "
                f"Both answers are in {self.paths.response.parent}; the environments differ "
                "(rerun with --keep and compare `docker run --rm --entrypoint pip <image> freeze` with the venv's)",
                listing,
            )
        tol = self.options.tolerance
        return passed(f"identical within rtol={tol.rtol:g}, atol={tol.atol:g}")
