"""The virtualenv stage's steps: interpreter, virtualenv, install, load and answer, then the checks
over the answers (`answers.py`)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from validator import commands
from validator.answers import (
    Answer,
    AnswerCheck,
    StageAnswers,
    check_answers,
    check_deterministic,
    check_expected_responses,
    check_output_contract,
    check_rejections,
    check_timing,
    declare_hint,
    steps_over_answers,
    undeclared_variable,
)
from validator.isolation import install_tool_env, model_process_env
from validator.model_files import PythonEnv, read_mlmodel, read_python_env
from validator.options import Options
from validator.results import Outcome, failed, passed
from validator.samples import SampleRequest, Signature, plan_requests
from validator.steps import Step
from validator.uv import export_command, repair_hint, summarize_failure, uv_binary
from validator.venv.interpreter import Interpreter, find_interpreter

PREDICTOR = Path(__file__).with_name("predictor.py")


@dataclass(frozen=True)
class VenvPaths:
    work: Path  # the virtualenv, the request bodies and the predictor's raw output
    answers: Path  # in the output directory: kept next to the report

    @property
    def venv(self) -> Path:
        return self.work / "venv"

    @property
    def home(self) -> Path:
        """HOME and TMPDIR of the model process."""
        return self.work / "home"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


class VenvStage:
    def __init__(
        self,
        model_dir: Path,
        options: Options,
        paths: VenvPaths,
        env: Mapping[str, str],
        *,
        label: str = "venv",
        requests: list[SampleRequest] | None = None,  # planned from this model's example when None
    ) -> None:
        self.model_dir = model_dir
        self.label = label
        self.requests = requests or []
        self.answers = StageAnswers(label)
        self.options = options
        self.paths = paths
        self.env = env
        self.tool_env = install_tool_env(env, options.network)
        self.uv = ""
        self.interpreter: Interpreter | None = None

    @cached_property
    def meta(self) -> dict[str, Any]:
        return read_mlmodel(self.model_dir)

    @cached_property
    def python_env(self) -> PythonEnv:
        return read_python_env(self.model_dir, self.meta)

    def setup_steps(self) -> list[Step]:
        """Up to answers in hand: what the baseline model goes through too."""
        return [
            Step("interpreter", self.find_interpreter),
            Step("create-virtualenv", self.create_virtualenv),
            Step("install-requirements", self.install_requirements),
            Step("load-model", self.load_model),
        ]

    def steps(self) -> list[Step]:
        return [*self.setup_steps(), *self._answered_steps()]

    def find_interpreter(self) -> Outcome:
        self.uv = uv_binary()
        wanted = self.python_env.python
        self.interpreter = find_interpreter(self.uv, wanted, self.tool_env, self.options.timeouts.install)
        if self.interpreter.exact:
            return passed(f"Python {self.interpreter.version} at {self.interpreter.path}")
        return passed(
            f"the model asks for Python {wanted}; none on this machine, so using "
            f"{self.interpreter.version} at {self.interpreter.path} (same minor release)"
        )

    def create_virtualenv(self) -> Outcome:
        assert self.interpreter is not None
        commands.run(
            [self.uv, "venv", "--no-project", "--python", self.interpreter.path, self.paths.venv],
            env=self.tool_env,
            timeout_s=self.options.timeouts.install,
        )
        return passed(str(self.paths.venv))

    def requirements_to_install(self) -> tuple[Path, str]:
        """requirements.txt, or for a uv project the pins of its uv.lock (`uv sync --frozen` semantics)."""
        python_env = self.python_env
        if not ((self.model_dir / "uv.lock").is_file() and (self.model_dir / "pyproject.toml").is_file()):
            return python_env.requirements_file, python_env.requirements_file.name
        exported = commands.run(
            export_command(self.uv, self.model_dir), env=self.tool_env, timeout_s=self.options.timeouts.install
        )
        locked = self.paths.venv.parent / "uv-lock-requirements.txt"
        locked.write_text(exported.output)
        return locked, "uv.lock"

    def install_requirements(self) -> Outcome:
        python_env = self.python_env
        requirements, source = self.requirements_to_install()
        constraints: list[str | Path] = ["--constraints", self.options.constraints] if self.options.constraints else []
        result = commands.run(
            [
                self.uv, "pip", "install", "--python", self.paths.python,
                *python_env.build_dependencies, "-r", requirements, *constraints,
            ],
            env=self.tool_env,
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
        within = f" within {self.options.constraints.name}" if self.options.constraints else ""
        return passed(f"installed from {source}{within}: {commands.last_line(result.output)}", result.tail())

    def load_model(self) -> Outcome:
        """Load the model once in the fresh virtualenv and answer every sample request twice."""
        self.requests = self.requests or plan_requests(self.model_dir, self.meta, self.options.requests)
        result = commands.run(
            [self.paths.python, "-I", PREDICTOR, self.model_dir, self._write_plan(), self.paths.work / "answers.json"],
            env=model_process_env(
                self.env, home=self.paths.home, bin_dir=self.paths.python.parent, declared=self.options.model_env
            ),
            cwd=self.paths.home,
            timeout_s=self.options.timeouts.predict,
            check=False,
        )
        if not result.ok:
            if name := undeclared_variable(result.output):
                return failed(declare_hint(name), result.tail())
            return failed(
                f"the model failed to load or to answer in a fresh virtualenv: {commands.last_line(result.output)}. "
                f"Reproduce with `mlflow models predict -m {shlex.quote(self.options.model_uri)} "
                "-i <request.json> --env-manager uv`",
                result.tail(),
            )
        self.answers = self._read_answers()
        self.answers.save(self.paths.answers)
        first = self.answers.answers[self.requests[0].name].seconds * 1000
        return passed(
            f"loaded in {self.answers.load_seconds:.1f} s; {len(self.requests)} request(s) answered twice, "
            f"the first in {first:.0f} ms; answers saved to {self.paths.answers}",
            result.tail(),
        )

    def _write_plan(self) -> Path:
        bodies = self.paths.work / "requests"
        bodies.mkdir(parents=True, exist_ok=True)
        self.paths.home.mkdir(parents=True, exist_ok=True)
        entries = []
        for request in self.requests:
            body_file = bodies / f"{request.name}.body"
            body_file.write_text(request.body)
            entries.append({"name": request.name, "body_file": str(body_file), "content_type": request.content_type})
        plan = self.paths.work / "plan.json"
        plan.write_text(json.dumps({"requests": entries, "latency_samples": self.options.requests.latency_samples}))
        return plan

    def _read_answers(self) -> StageAnswers:
        raw = json.loads((self.paths.work / "answers.json").read_text())
        answers = StageAnswers(self.label, load_seconds=raw["load_seconds"], latency_seconds=raw["latency_seconds"])
        for name, (first, second) in raw["answers"].items():
            answers.answers[name] = Answer(**first)
            answers.repeats[name] = Answer(**second)
        return answers

    def _answered_steps(self) -> list[Step]:
        tolerance = self.options.tolerance
        checks: dict[str, AnswerCheck] = {
            "answers": check_answers,
            "rejects-invalid-input": check_rejections,
            "deterministic": lambda requests, answers: check_deterministic(requests, answers, tolerance),
            "output-contract": lambda requests, answers: check_output_contract(
                requests, answers, Signature.from_mlmodel(self.meta).outputs
            ),
            "expected-responses": lambda requests, answers: check_expected_responses(requests, answers, tolerance),
            "timing": lambda requests, answers: check_timing(requests, answers, self.options.budgets),
        }
        return steps_over_answers(self, checks, after="load-model", policy=self.options.policy)
