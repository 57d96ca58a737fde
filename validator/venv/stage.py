"""The virtualenv stage's steps: interpreter, virtualenv, install, predict."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from validator import commands
from validator.isolation import install_tool_env, model_process_env
from validator.model_files import PythonEnv, read_mlmodel, read_python_env, serving_example_path
from validator.options import Options
from validator.results import Outcome, failed, passed
from validator.steps import Step
from validator.uv import export_command, repair_hint, summarize_failure, uv_binary
from validator.venv.interpreter import Interpreter, find_interpreter

PREDICTOR = Path(__file__).with_name("predictor.py")


@dataclass(frozen=True)
class VenvPaths:
    venv: Path
    home: Path  # HOME and TMPDIR of the model process
    predictions: Path  # in the output directory: kept next to the report

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


class VenvStage:
    def __init__(self, model_dir: Path, options: Options, paths: VenvPaths, env: Mapping[str, str]) -> None:
        self.model_dir = model_dir
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

    def steps(self) -> list[Step]:
        return [
            Step("interpreter", self.find_interpreter),
            Step("create-virtualenv", self.create_virtualenv),
            Step("install-requirements", self.install_requirements),
            Step("predict-input-example", self.predict_input_example),
        ]

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

    def predict_input_example(self) -> Outcome:
        request = serving_example_path(self.model_dir, self.meta)
        self.paths.home.mkdir(parents=True, exist_ok=True)
        self.paths.predictions.parent.mkdir(parents=True, exist_ok=True)
        result = commands.run(
            [self.paths.python, "-I", PREDICTOR, self.model_dir, request, self.paths.predictions],
            env=model_process_env(self.env, home=self.paths.home, bin_dir=self.paths.python.parent),
            cwd=self.paths.home,
            timeout_s=self.options.timeouts.predict,
            check=False,
        )
        if not result.ok:
            return failed(
                f"the model failed to predict on its input example in a fresh virtualenv: "
                f"{commands.last_line(result.output)}. Reproduce with "
                f"`mlflow models predict -m {shlex.quote(self.options.model_uri)} -i {request.name} --env-manager uv`",
                result.tail(),
            )
        return passed(f"predictions saved to {self.paths.predictions}", result.tail())
