"""The virtualenv stage's steps: interpreter, virtualenv, install, predict."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from validator import commands
from validator.isolation import install_tool_env, model_process_env
from validator.model_files import read_mlmodel, read_python_env, serving_example_path
from validator.options import Options
from validator.results import Outcome, failed, passed
from validator.steps import Step
from validator.venv.interpreter import Interpreter, find_interpreter, uv_binary

PREDICTOR = Path(__file__).with_name("predictor.py")
_MISSING_VERSION = re.compile(r"no version of (?P<requirement>[A-Za-z0-9_.\-\[\]]+[=<>!~]=?[^\s,]+)")


@dataclass(frozen=True)
class VenvPaths:
    venv: Path
    home: Path  # HOME and TMPDIR of the model process
    predictions: Path  # in the output directory: kept next to the report

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def fix_hint(model_uri: str, uv_output: str) -> str:
    """What to run to repair a requirement uv could not satisfy."""
    match = _MISSING_VERSION.search(uv_output)
    if not match:
        return "fix requirements.txt, or repair it in place with `mlflow models update-pip-requirements`"
    bad = match["requirement"]
    name = re.split(r"[=<>!~\[]", bad)[0]
    uri = shlex.quote(model_uri)
    return (
        f"{bad} does not exist on the index: repair the model with "
        f"`mlflow models update-pip-requirements -m {uri} add \"{name}==<a released version>\"`, "
        f"after trying it with `mlflow models predict -m {uri} --pip-requirements-override \"{name}==<version>\"`"
    )


def summarize_uv_failure(output: str) -> str:
    """uv explains resolution failures after a '×' line; keep that explanation, on one line."""
    lines = [line.strip(" ×╰─▶│") for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if "No solution found" in line or "error:" in line), 0)
    return " ".join(line for line in lines[start:] if line)[:600]


class VenvStage:
    def __init__(self, model_dir: Path, options: Options, paths: VenvPaths, env: Mapping[str, str]) -> None:
        self.model_dir = model_dir
        self.options = options
        self.paths = paths
        self.env = env
        self.tool_env = install_tool_env(env, options.network)
        self.uv = ""
        self.interpreter: Interpreter | None = None

    def steps(self) -> list[Step]:
        return [
            Step("interpreter", self.find_interpreter),
            Step("create-virtualenv", self.create_virtualenv),
            Step("install-requirements", self.install_requirements),
            Step("predict-input-example", self.predict_input_example),
        ]

    def find_interpreter(self) -> Outcome:
        self.uv = uv_binary()
        meta = read_mlmodel(self.model_dir)
        wanted = read_python_env(self.model_dir, meta).python
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

    def install_requirements(self) -> Outcome:
        python_env = read_python_env(self.model_dir, read_mlmodel(self.model_dir))
        result = commands.run(
            [
                self.uv, "pip", "install", "--python", self.paths.python,
                *python_env.build_dependencies, "-r", python_env.requirements_file,
            ],
            env=self.tool_env,
            timeout_s=self.options.timeouts.install,
            check=False,
        )
        if not result.ok:
            return failed(
                f"the model's requirements cannot be installed: {summarize_uv_failure(result.output)}. "
                f"Fix: {fix_hint(self.options.model_uri, result.output)}",
                result.tail(),
            )
        return passed(commands.last_line(result.output), result.tail())

    def predict_input_example(self) -> Outcome:
        request = serving_example_path(self.model_dir, read_mlmodel(self.model_dir))
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
