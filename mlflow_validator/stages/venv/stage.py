"""The virtualenv stage's steps: interpreter, virtualenv, install, load and answer, then the checks
over the answers (`answers.py`)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from textwrap import shorten

from mlflow_validator import commands
from mlflow_validator.checks import Policy
from mlflow_validator.egress.proxy import Tally
from mlflow_validator.egress.session import Cost, Egress, check_egress, first_refusal, opened_egress, refusal_first
from mlflow_validator.egress.tunnel import DOOR, DOOR_CLOSED, DOOR_PORT
from mlflow_validator.errors import InfrastructureError, ValidatorError
from mlflow_validator.expectations.answers import (
    Answer,
    AnswerCheck,
    StageAnswers,
    Stream,
    check_answers,
    check_deterministic,
    declare_hint,
    over_answers,
    reach_hint,
    shared_checks,
    undeclared_variable,
)
from mlflow_validator.expectations.baseline import check_changes
from mlflow_validator.expectations.chat import chat_contract
from mlflow_validator.expectations.generated import JSON, CannotGenerate, explore
from mlflow_validator.expectations.packages import canonical
from mlflow_validator.expectations.requests import Expect, SampleRequest
from mlflow_validator.expectations.team import ChecksContext, run_team_checks
from mlflow_validator.isolation import (
    MODEL_ENV_ALLOWED,
    UntrustedFileError,
    install_tool_env,
    model_process_env,
    python_mirror_env,
    read_untrusted,
    secrets_of,
)
from mlflow_validator.model.mlmodel import ModelFileError
from mlflow_validator.outputs import ANSWERS_DIR
from mlflow_validator.results import Outcome, Stage, Status, failed, passed, skipped
from mlflow_validator.serving.endpoint import SOCKET_SCHEME, BadAnswer, Endpoint
from mlflow_validator.stages.context import RunContext
from mlflow_validator.stages.docker import LABEL
from mlflow_validator.stages.docker.builder import ImageBuilder
from mlflow_validator.stages.docker.engine import Docker, docker_env, engine_problem, oom_killed
from mlflow_validator.stages.venv.cage import ENABLE_HINT as CAGE_HINT
from mlflow_validator.stages.venv.cage import (
    Bounds,
    Cage,
    Watch,
    cage_for,
    cage_problem,
    caged,
    hidden_paths,
    watched,
)
from mlflow_validator.stages.venv.container_cage import (
    CONTAINER_UIDS,
    ENGINE_HINT,
    FILES,
    Channel,
    ContainerCage,
    EngineRefused,
    bridged,
    created,
    start_problem,
    started,
)
from mlflow_validator.stages.venv.container_cage import HOME as CONTAINER_HOME
from mlflow_validator.stages.venv.interpreter import Interpreter, find_interpreter, minor_of, no_interpreter
from mlflow_validator.steps import Step, run_steps, steps_for
from mlflow_validator.uv import repair_hint, summarize_failure, uv_binary

PREDICTOR = Path(__file__).with_name("predictor.py")
STOP_GRACE_S = 5
MAX_ANSWERS_BYTES = 32 * 2**20  # the answers file the model process writes (JSON parses to ~25x its size)
MODEL_LOG_READ_BYTES = 2**20
ANSWERS_POLL_S = 0.05


@dataclass(frozen=True)
class VenvPaths:
    work: Path  # the virtualenv, the plan, the model's HOME and log, the socket; the cage shows it none but HOME
    answers: Path  # in the output directory: kept next to the report

    @property
    def venv(self) -> Path:
        return self.work / "venv"

    @property
    def home(self) -> Path:
        """HOME and TMPDIR of the model process: the one directory it may write."""
        return self.work / "home"

    @property
    def plan(self) -> Path:
        """The requests, read-only for the model."""
        return self.work / "plan"

    @property
    def answers_file(self) -> Path:
        """Written by the model process: read as hostile input."""
        return self.home / "answers.json"

    @property
    def socket(self) -> Path:
        """Where the validator listens for the model process, which only inherits the listening end."""
        return self.work / "socket" / "model.sock"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def model_log(self) -> Path:
        """What the model process printed."""
        return self.work / "model.log"


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{shorten(repr(value), 40)} is not a finite number")
    return float(value)


def _answer(given: object) -> Answer:
    if not (isinstance(given, dict) and isinstance(given.get("status"), int) and isinstance(given.get("body"), str)):
        raise TypeError("an answer is not a {status, body, seconds} object")
    return Answer(given["status"], given["body"], _number(given.get("seconds")))


class BaselineUnavailable(ValidatorError):
    """The baseline model could not answer, so there is nothing to compare with."""


class VenvStage:
    """`label` names the answers: "venv" for the model under validation, "baseline" for --baseline's."""

    def __init__(self, run: RunContext, label: str = "venv") -> None:
        self.run = run
        self.label = label
        self.model_dir = run.model.directory
        self.files = run.model.files
        self.requests: list[SampleRequest] = []
        self.answers = StageAnswers(label)
        self.options = run.options
        self.paths = VenvPaths(run.workdir / f"{label}-stage", run.output_dir / ANSWERS_DIR / label)
        self.env = run.env
        self.tool_env = install_tool_env(run.env, run.network)
        self.uv = ""
        self.interpreter: Interpreter | None = None
        self.in_image = False  # no interpreter here: the model's environment is the dependency image on the engine
        self.cage: Cage | ContainerCage | None = None  # set by the sandbox step when the model can be caged
        self.docker: Docker | None = None  # the engine of a container cage
        self.watch: Watch | None = None  # the cage's processes together, while the model process runs
        self.endpoint: Endpoint | None = None  # the model process, serving, once it has answered the plan
        self.baseline_endpoint: Endpoint | None = None  # the baseline's, once changed-vs-baseline ran
        self.egress: Egress | None = None  # the proxy of sandbox.egress, once opened
        self.plan_calls: Tally | None = None  # what the proxy saw while the model answered the plan
        self.exit_stack = ExitStack()  # what close() stops: the model process

    def _setup(self) -> dict[str, Callable[[], Outcome]]:
        """Up to answers in hand: what the baseline model goes through too."""
        return {
            "interpreter": self.find_interpreter,
            "create-virtualenv": self.create_virtualenv,
            "install-requirements": self.install_requirements,
            "sandbox": self.build_cage,
            "load-model": self.load_model,
        }

    def steps(self) -> list[Step]:
        return steps_for(Stage.VENV, self._setup() | self._checks(), self.options.policy)

    def setup_steps(self) -> list[Step]:
        return [step for step in self.steps() if step.name in self._setup()]

    def answered(self) -> StageAnswers | None:
        return self.answers if self.answers.answers else None

    def close(self) -> None:
        """Stops the model process; the virtualenv is in the run's work directory, removed with it."""
        self.exit_stack.close()

    def find_interpreter(self) -> Outcome:
        self.uv = uv_binary()
        wanted = self.files.python_env.python
        mirror = python_mirror_env(self.env) if self.options.python.downloads == "auto" else None
        timeout = self.options.timeouts.install
        self.interpreter = find_interpreter(self.uv, wanted, self.tool_env, timeout, mirror=mirror)
        if self.interpreter is None:
            return self._python_in_a_container(wanted)
        if self.interpreter.exact:
            return passed(f"Python {self.interpreter.version} at {self.interpreter.path}")
        return passed(
            f"the model asks for Python {wanted}; none on this machine, so using "
            f"{self.interpreter.version} at {self.interpreter.path} (same minor release)"
        )

    def _python_image(self) -> str:
        return f"python:{self.files.python_env.python}-slim"

    def _python_in_a_container(self, wanted: str) -> Outcome:
        """No interpreter of the model's minor release here: its exact Python is the dependency image's base."""
        if self.options.sandbox.backend == "bubblewrap":
            raise no_interpreter(wanted, "sandbox.backend is bubblewrap")
        if problem := engine_problem(self.env, self.options.docker.cli):
            raise no_interpreter(wanted, f"the Docker engine: {problem}")
        self.in_image = True
        return passed(
            f"no Python {minor_of(wanted)} on this machine: the model runs in a container of the run's dependency "
            f"image, whose base image ({self._python_image()}, as MLflow's build-docker makes it) has Python {wanted}"
        )

    def create_virtualenv(self) -> Outcome:
        if self.in_image:
            return passed("none on this machine: the model's environment is the dependency image (see sandbox)")
        assert self.interpreter is not None
        commands.run(
            [self.uv, "venv", "--no-project", "--python", self.interpreter.path, self.paths.venv],
            env=self.tool_env,
            timeout_s=self.options.timeouts.install,
        )
        return passed(str(self.paths.venv))

    def install_requirements(self) -> Outcome:
        """Exactly the run's lock, the one the image installs too: `uv pip sync` adds nothing and resolves nothing."""
        try:
            lock = self.run.resolver.lock()
        except ModelFileError:
            unresolved = self.run.resolver.resolve(None).result
            return failed(
                f"the model's requirements cannot be resolved, so nothing can be installed: "
                f"{summarize_failure(unresolved.output)}. "
                f"Fix: {repair_hint(self.options.model_uri, unresolved.output)}",
                unresolved.tail(),
            )
        if self.in_image:
            return passed(f"{lock.described}: installed in the dependency image (see sandbox), not on this machine")
        result = commands.run(
            [self.uv, "pip", "sync", "--no-build", "--python", self.paths.python, lock.file],
            env={**self.tool_env, "UV_LINK_MODE": "copy"},  # hard links would let the model write into uv's cache
            cwd=self.model_dir,
            timeout_s=self.options.timeouts.install,
            check=False,
        )
        if not result.ok:
            return failed(
                f"the model's requirements cannot be installed: {summarize_failure(result.output)}. "
                f"Fix: {repair_hint(self.options.model_uri, result.output)}",
                result.tail(),
            )
        self.answers.installed = self._installed()
        return passed(f"installed {lock.described}: {commands.last_line(result.output)}", result.tail())

    def _installed(self) -> dict[str, str]:
        """Read by uv from the distributions' metadata: nothing of the venv runs."""
        listed = commands.run(
            [self.uv, "pip", "list", "--python", self.paths.python, "--format", "json"],
            env=self.tool_env,
            timeout_s=self.options.timeouts.install,
        )
        listing = json.loads(listed.output.strip().splitlines()[-1])  # after uv's "Using Python …" line
        return canonical({entry["name"]: entry["version"] for entry in listing})

    def build_cage(self) -> Outcome:
        """bubblewrap where it starts (or where `sandbox.backend` asks for it), else a container on the
        Docker engine. Under the `error` policy (CI's default) a machine that can cage neither way is the
        validator's trouble, never the model's: exit 2. Under `warn` the model runs uncaged, said so."""
        wanted = "container" if self.in_image else self.options.sandbox.backend
        problems = []
        if wanted != "container":
            if not (problem := cage_problem(self.env, os.geteuid())):
                return self._bubblewrap_cage()
            problems.append(f"bubblewrap: {problem}")
        if wanted != "bubblewrap":
            if not (problem := engine_problem(self.env, self.options.docker.cli)):
                return self._container_cage()
            problems.append(f"the Docker engine: {problem}")
        found = "; ".join(problems)
        hint = {"bubblewrap": CAGE_HINT, "container": ENGINE_HINT}.get(wanted, f"{CAGE_HINT}; or {ENGINE_HINT}")
        if self.options.policy("sandbox") is Policy.ERROR:
            raise InfrastructureError(f"the model process cannot be caged here ({found})", hint)
        return failed(f"the model process cannot be caged here ({found}): {hint}")

    def _bounds(self) -> Bounds:
        sandbox = self.options.sandbox
        cpu_seconds = int(self.options.timeouts.predict * (os.cpu_count() or 1))
        return Bounds(sandbox.memory_mb, cpu_seconds, sandbox.max_processes)

    def _bubblewrap_cage(self) -> Outcome:
        interpreter = self.interpreter.path if self.interpreter else Path(sys.executable)
        shown: tuple[Path, ...] = (self.paths.venv, self.paths.plan, self.model_dir, PREDICTOR.parent)
        if egress := self._open_egress():
            shown += (egress.directory, DOOR.parent)
        self.cage = cage = cage_for(
            self.paths.home,
            readable=(*interpreter_prefixes(interpreter, self.paths.python), *shown),
            hidden=hidden_paths(self.env, Path.cwd(), extra=[self.run.workdir]),
            bounds=self._bounds(),
            euid=os.geteuid(),
        )
        self.paths.home.mkdir(parents=True, exist_ok=True)
        who = "the validator's user in a user namespace of its own"
        if cage.model_uid is not None:
            os.chown(self.paths.home, cage.model_uid, cage.model_uid)
            if egress:
                egress.give_to(cage.model_uid)
            who = f"uid {cage.model_uid}, no file on the host its own"
        bounds = cage.bounds
        return passed(
            f"bubblewrap: {who}, no capability; own PID, network, mount and IPC namespaces; host read-only; "
            f"{len(cage.hidden)} directories hidden; at most {bounds.memory_mb} MiB, {bounds.processes} tasks and "
            f"{bounds.cpu_seconds} CPU seconds all processes together{self._egress_said()}"
        )

    def _open_egress(self) -> Egress | None:
        """The proxy of sandbox.egress, opened once for the stage; None when nothing is declared."""
        if self.egress is None and self.options.egress:
            self.egress = self.exit_stack.enter_context(opened_egress(self.options.egress))
        return self.egress

    def _egress_said(self) -> str:
        if not self.options.egress:
            return ""
        allowed = ", ".join(str(destination) for destination in self.options.egress)
        return f"; its only way out is the validator's proxy, to {allowed}"

    def _container_cage(self) -> Outcome:
        """The run's dependency image (the docker stage's, reused or built now) on the engine."""
        docker = Docker(self.options.docker.cli, docker_env(self.env))
        build_log = self.run.output_dir / "sandbox-image-build.log"  # next to the report, as the docker stage's
        builder = ImageBuilder(self.run, docker, self.paths.work / "docker-context", build_log)
        if self.in_image and (base := builder.generate().base_image) != (wanted := self._python_image()):
            raise InfrastructureError(  # MLflow's Java flavors start from Ubuntu with Python 3.11
                f"the machine has no Python {self.files.python_env.python}, and the model's serving image starts "
                f"from {base}, not {wanted}, so no container here has the model's Python either",
                f"install Python {minor_of(self.files.python_env.python)} on the runner",
            )
        image = builder.dependencies()
        if image.failure:
            return replace(image.failure, message=f"the cage's image cannot be built: {image.failure.message}")
        self.docker = docker
        name = f"mlflow-validator-{self.run.run_id}-{self.label}"
        uid = CONTAINER_UIDS.start + secrets.randbelow(len(CONTAINER_UIDS))
        self.cage = cage = ContainerCage(image.tag, name, {LABEL: self.run.run_id}, uid, self._bounds())
        bounds = cage.bounds
        return passed(
            f"container on the Docker engine ({image.how}): uid {cage.uid}, which owns nothing in the image; no "
            f"capability, no new privileges; no network; read-only root; nothing of the job mounted; at most "
            f"{bounds.memory_mb} MiB and {bounds.processes} tasks all processes together, {bounds.cpu_seconds} CPU "
            f"seconds each{self._egress_said()}"
        )

    def load_model(self) -> Outcome:
        """Load the model once in the fresh environment, caged, and answer every sample request twice. The
        process then stays, serving on a socket, until the stage closes (generated inputs, team checks)."""
        if self.in_image and not isinstance(self.cage, ContainerCage):
            raise InfrastructureError(
                "the model's Python is only in its container on the engine, and the model was not caged there",
                "let the sandbox step run (`checks: {sandbox: error}`), or install the model's Python on the runner",
            )
        if self.cage is None and self.options.policy("sandbox") is Policy.ERROR:
            return skipped("not run: the model would run uncaged (see sandbox; `checks: {sandbox: warn}` allows it)")
        self.requests = self.run.requests()
        self.paths.home.mkdir(parents=True, exist_ok=True)
        plan = self._write_plan()
        listening = self.exit_stack.enter_context(self._listen())
        if isinstance(self.cage, ContainerCage):
            answered = self._answers_from_container(self.cage, listening)
        else:
            answered = self._answers_from_host(plan, listening)
        if isinstance(answered, Outcome):
            return answered
        try:
            self.answers = self._read_answers(answered)
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
            return failed(f"the model process wrote answers the validator cannot read: {exc}", self._model_output())
        if self.egress:
            self.plan_calls = self.egress.proxy.snapshot()
        self.answers.save(self.paths.answers, secrets_of(self.options.model_env))
        self.endpoint = Endpoint(f"{SOCKET_SCHEME}{self.paths.socket}", self.options.timeouts.request)
        first = self.answers.answers[self.requests[0].name].seconds * 1000
        return passed(
            f"loaded in {self.answers.load_seconds:.1f} s; {len(self.requests)} request(s) answered twice, "
            f"the first in {first:.0f} ms; answers saved to {self.paths.answers}",
            self._model_output(),
        )

    def _answers_from_host(self, plan: Path, listening: socket.socket) -> bytes | Outcome:
        """The model process on this machine, in bubblewrap's cage (or none, under `warn`): it writes its
        answers into its HOME and answers on the socket whose listening end it inherits."""
        command: list[str | Path] = [
            self.paths.python, "-I", PREDICTOR, self.model_dir, plan, self.paths.answers_file,
            str(listening.fileno()),
        ]  # fmt: skip
        env = model_process_env(
            self.env, home=self.paths.home, bin_dir=self.paths.python.parent, declared=self.options.model_env
        )
        if isinstance(self.cage, Cage) and (egress := self._open_egress()):  # uncaged, nothing would be enforced
            command, env = egress.behind_door(command), {**env, **egress.env()}
        process = self.exit_stack.enter_context(
            commands.background(
                caged(self.cage, command) if isinstance(self.cage, Cage) else command,
                env=env,
                cwd=self.paths.home,
                output_file=self.paths.model_log,
                grace_s=STOP_GRACE_S,
                pass_fds=[listening.fileno()],
            )
        )
        if isinstance(self.cage, Cage):
            self.watch = self.exit_stack.enter_context(watched(process, self.cage.bounds))
        if problem := self._await(process, self.paths.answers_file):
            return problem
        try:
            return read_untrusted(self.paths.answers_file, MAX_ANSWERS_BYTES)
        except UntrustedFileError as exc:
            return failed(f"the model process wrote answers the validator cannot read: {exc}", self._model_output())

    def _answers_from_container(self, cage: ContainerCage, listening: socket.socket) -> bytes | Outcome:
        """The model process in its container: its answers are the first line it sends back; then the
        bridge answers the validator's socket through it."""
        assert self.docker is not None
        files = {"model": self.model_dir, "plan": self.paths.plan, "predictor.py": PREDICTOR}
        command = ["python", "-I", f"{FILES}/predictor.py", f"{FILES}/model", f"{FILES}/plan/plan.json", "-"]
        env = {"HOME": CONTAINER_HOME, "TMPDIR": CONTAINER_HOME, "PYTHONDONTWRITEBYTECODE": "1"}
        env |= {name: self.env[name] for name in MODEL_ENV_ALLOWED if name in self.env}
        if egress := self._open_egress():
            env |= egress.env() | {"MLFLOW_VALIDATOR_DOOR": f"127.0.0.1:{DOOR_PORT}"}
        argv = created(cage, command, env, passed=list(self.options.model_env))
        process = self.exit_stack.enter_context(
            started(
                self.docker, cage, files, argv, self.options.model_env, self.paths.model_log,
                timeout_s=self.options.timeouts.install,
            )
        )  # fmt: skip
        if egress:
            self.exit_stack.enter_context(egress.in_container(self.docker, cage.name))
        channel = Channel(process, MAX_ANSWERS_BYTES)
        try:
            answers = channel.next_line(self.options.timeouts.predict)
        except (TimeoutError, ConnectionError, BadAnswer) as exc:
            return self._container_failure(cage, process, exc)
        if oom_killed(self.docker, cage.name):  # a child killed for memory, the answers sent all the same
            return self._out_of_memory(cage)
        self.exit_stack.enter_context(bridged(listening, channel, self.options.timeouts.request))
        return answers

    def _container_failure(self, cage: ContainerCage, process: subprocess.Popen[bytes], problem: Exception) -> Outcome:
        assert self.docker is not None
        if isinstance(problem, TimeoutError):
            return failed(
                f"the model did not load and answer within {self.options.timeouts.predict:g} s "
                "(timeouts.predict): loading or answering hangs",
                self._model_output(),
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
        if refused := start_problem(self.docker, cage.name):
            raise EngineRefused(refused, "see the engine's log; the model never ran")
        if oom_killed(self.docker, cage.name):
            return self._out_of_memory(cage)
        if isinstance(problem, BadAnswer):
            return failed(f"the model process wrote answers the validator cannot read: {problem}")
        return self._load_failure(self._model_log())

    def _out_of_memory(self, cage: ContainerCage) -> Outcome:
        return failed(
            "the model's processes together used more memory than the cage allows "
            f"(sandbox.memory_mb: {cage.bounds.memory_mb}): the kernel killed them",
            self._model_output(),
        )

    def _listen(self) -> socket.socket:
        """A socket where the model cannot write, so it cannot put anything else in its place."""
        self.paths.socket.parent.mkdir(mode=0o700)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A socket's path is limited to 107 bytes and work directories are longer: bind through a
        # descriptor of the directory.
        directory = os.open(self.paths.socket.parent, os.O_PATH)
        try:
            listening.bind(f"/proc/self/fd/{directory}/{self.paths.socket.name}")
        finally:
            os.close(directory)
        listening.listen()
        return listening

    def _model_output(self) -> str:
        return commands.tail(self._model_log())

    def _model_log(self) -> str:
        """The end of what the model printed: it may print without end."""
        with self.paths.model_log.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - MODEL_LOG_READ_BYTES))
            return log.read().decode(errors="replace")

    def _await(self, process: subprocess.Popen[bytes], answers_file: Path) -> Outcome | None:
        """None once the answers are written; the failure when the process ends or runs out of time first."""
        deadline = time.monotonic() + self.options.timeouts.predict
        while not os.path.lexists(answers_file):
            if process.poll() is not None:
                if self.watch and self.watch.breach:
                    return failed(self.watch.breach, self._model_output())
                return self._load_failure(self._model_log())
            if time.monotonic() > deadline:
                return failed(
                    f"the model did not load and answer within {self.options.timeouts.predict:g} s "
                    "(timeouts.predict): loading or answering hangs",
                    self._model_output(),
                )
            time.sleep(ANSWERS_POLL_S)
        return None

    def _load_failure(self, output: str) -> Outcome:
        if self.egress and DOOR_CLOSED in output:
            raise InfrastructureError(
                "the egress door in the model's container did not open, so the model had no way out",
                "see the engine's log; rerun with --debug to see the docker exec that starts it",
            )
        if refused := first_refusal(self.egress):
            return failed(refused, commands.tail(output))
        if name := undeclared_variable(output):
            return failed(declare_hint(name), commands.tail(output))
        if reach := reach_hint(output):
            return failed(reach, commands.tail(output))
        return failed(
            f"the model failed to load or to answer in a fresh virtualenv: {commands.last_line(output)}. "
            f"Reproduce with `mlflow models predict -m {shlex.quote(self.options.model_uri)} "
            "-i <request.json> --env-manager uv`",
            commands.tail(output),
        )

    def _write_plan(self) -> Path:
        bodies = self.paths.plan / "requests"
        bodies.mkdir(parents=True, exist_ok=True)
        entries = []
        for request in self.requests:
            body_file = bodies / f"{request.name}.body"
            body_file.write_text(request.body)
            relative = str(body_file.relative_to(self.paths.plan))
            entries.append({"name": request.name, "body_file": relative, "content_type": request.content_type})
        plan = self.paths.plan / "plan.json"
        written = {"requests": entries, "latency_samples": self.options.requests.latency_samples}
        if self._streams():
            written["stream"] = self.requests[0].name  # the example: what the model's API is asked
        plan.write_text(json.dumps(written))
        return plan

    def _read_answers(self, written: bytes) -> StageAnswers:
        """The model process's answers, checked field by field: it may have written anything."""
        raw = json.loads(written)
        answers = StageAnswers(
            self.label,
            load_seconds=_number(raw["load_seconds"]),
            latency_seconds=[_number(seconds) for seconds in raw["latency_seconds"]],
            installed=self.answers.installed,
        )
        for request in self.requests:
            first, second = (_answer(given) for given in raw["answers"][request.name])
            answers.answers[request.name], answers.repeats[request.name] = first, second
        if self._streams():  # asked for: an answer without it, or not an object, is one the validator cannot read
            streamed = raw["stream"]
            if not isinstance(streamed, dict):
                raise TypeError("the stream is not an object")
            if streamed.get("offered", True):
                if not isinstance(streamed.get("chunks"), list) or not isinstance(streamed.get("error", ""), str):
                    raise TypeError("the stream is not a {chunks, error} object")
                answers.stream = Stream(self.requests[0].name, streamed["chunks"], streamed.get("error", ""))
        return answers

    def _streams(self) -> bool:
        """Whether the plan asks predict_stream once: a chat model that MLmodel says streams."""
        return bool(chat_contract(self.files.mlmodel)) and self.files.mlmodel.python_function.streamable

    def _checks(self) -> dict[str, Callable[[], Outcome]]:
        checks: dict[str, AnswerCheck] = {
            "answers": lambda requests, answers: refusal_first(check_answers(requests, answers), self.egress),
            "deterministic": self.deterministic,
            **shared_checks(lambda: self.files.mlmodel, self.options),
            "changed-vs-baseline": self.compare_with_baseline,
        }
        return over_answers(self, checks) | {
            "generated-inputs": self.generated_inputs,
            "team-checks": self.team_checks,
            "egress": self.check_egress,
        }

    def deterministic(self, requests: list[SampleRequest], answers: StageAnswers) -> Outcome:
        if contract := chat_contract(self.files.mlmodel):
            return skipped(f"a {contract.api} model's words vary between calls to its LLM: not compared")
        return check_deterministic(requests, answers, self.options.tolerance)

    def check_egress(self) -> Outcome:
        """The plan is answered inside the cage, so its calls (loading's too) are counted together, against as many
        predictions as it asked: each request that calls for an answer twice, the latency samples, the stream."""
        if not self.options.egress:
            return check_egress(None, [], None)
        if self.egress is None:
            return skipped("the model never ran caged, so no destination was open to it")
        answered = [request for request in self.requests if request.expect is not Expect.REJECTION]
        predictions = 2 * len(answered) + self.options.requests.latency_samples + (self.answers.stream is not None)
        seen = self.plan_calls if self.plan_calls is not None else self.egress.proxy.snapshot()
        costs = [Cost.between("loading and the plan", Tally(), seen, max(predictions, 1))]
        return check_egress(self.egress, costs, self.options.budgets.max_upstream_calls)

    def team_checks(self) -> Outcome:
        if self.options.checks_dir is None:
            return skipped("no team checks (--checks DIR or `checks_dir:` in the config file)")
        assert self.endpoint is not None
        baseline = self.baseline_endpoint.address if self.baseline_endpoint else None
        context = ChecksContext.of(self.run, Stage.VENV, self.endpoint.address, baseline)
        return run_team_checks(context, self.options, self.env, self.paths.work / "team-checks")

    def generated_inputs(self) -> Outcome:
        assert self.endpoint is not None
        endpoint, wanted = self.endpoint, self.options.generated
        try:
            found = explore(
                lambda body: endpoint.invoke(body, JSON),
                self.files.mlmodel.signature,
                wanted.examples,
                wanted.seed,
                storage=self.paths.work / "hypothesis",
                chat=chat_contract(self.files.mlmodel),
            )
        except CannotGenerate as exc:
            return skipped(f"no input can be generated for this signature: {exc}")
        for index, (body, answer) in enumerate(found.passed):
            request = SampleRequest(f"generated-{index}", body, JSON, f"generated input {index} (seed {found.seed})")
            self.answers.generated.append(request)
            self.answers.answers[request.name] = answer
        if found.failing:
            saved = self.run.output_dir / "generated-inputs" / "smallest-failing.json"
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(found.failing + "\n")
            return failed(
                f"a valid input breaks the model: {found.why}. The smallest failing input found (seed "
                f"{found.seed}, after {found.tried} asked), {shorten(found.failing, 200, placeholder=' …')}, is "
                f"saved as {saved}: add it to your requests directory",
                found.failing,
                source=saved,
            )
        contract = chat_contract(self.files.mlmodel)
        kind = f"conversations ({contract.api})" if contract else "inputs"
        extremes = "" if contract else ", the extremes of each type included"
        return passed(
            f"{found.tried} {kind} (seed {found.seed}{extremes}) answered 200 within the output contract or refused "
            f"by MLflow; {len(found.passed)} will be asked again in the docker stage"
        )

    def compare_with_baseline(self, requests: list[SampleRequest], answers: StageAnswers) -> Outcome:
        """The same requests through the baseline model, rebuilt in its own virtualenv."""
        baseline = self.run.baseline
        if baseline is None:
            return skipped("no baseline given (--baseline or `baseline:` in the config file)")
        if contract := chat_contract(self.files.mlmodel):
            return skipped(f"a {contract.api} model's words vary between calls to its LLM: not compared")
        baseline.download_rest()
        options = replace(self.options, model_uri=str(self.options.baseline))
        workdir = self.run.workdir / "baseline-lock"  # the baseline's lock is not the one next to the report
        resolver = self.run.resolver.for_model(baseline.files, workdir)
        stage = VenvStage(replace(self.run, model=baseline, options=options, resolver=resolver), label="baseline")
        self.exit_stack.callback(stage.close)  # it serves the team checks' `baseline` until this stage closes
        for result in run_steps(Stage.VENV, stage.setup_steps()):
            if result.status is not Status.PASSED:
                raise BaselineUnavailable(
                    f"the baseline {options.model_uri} could not answer the requests ({result.name}: {result.message})",
                    "point --baseline at a model that validates, or drop it",
                )
        self.baseline_endpoint = stage.endpoint
        return check_changes(requests, answers, stage.answers, self.options)


def interpreter_prefixes(interpreter: Path, venv_python: Path) -> list[Path]:
    """The interpreter's install, and the same install by the path the venv's python links to when uv names
    it through a link to its directory (cpython-3.13-… for cpython-3.13.0-…). Only a path that resolves to the
    install itself is shown: a link elsewhere (a home's bin, a checkout's .venv) would show what the cage hides."""
    prefix = Path(os.path.realpath(interpreter)).parent.parent
    if not venv_python.is_symlink():
        return [prefix]
    linked = Path(os.path.normpath(venv_python.parent / os.readlink(venv_python))).parent.parent
    return [prefix, linked] if linked != prefix and Path(os.path.realpath(linked)) == prefix else [prefix]
