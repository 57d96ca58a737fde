"""uv, as both the static stage (resolve) and the venv stage (install) use it."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from mlflow_validator.errors import CommandError, InfrastructureError

_MISSING_VERSION = re.compile(r"no versions? of (?P<requirement>[A-Za-z0-9_.\-\[\]]+[=<>!~]=?[^\s,]+)")
# The platforms a model may be asked to install on, as uv names them. glibc 2.36 is Debian bookworm's, the
# oldest the slim images that models' Dockerfiles start from have.
UV_PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_36", "linux/arm64": "aarch64-manylinux_2_36"}
SERVING_PLATFORM = UV_PLATFORMS["linux/amd64"]  # what the validator's stages install and run


def uv_binary() -> str:
    """The uv that ships with the `uv` package we depend on, so uv need not be on PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError) as exc:
        raise CommandError("the uv binary is missing", "reinstall mlflow-validator (it depends on uv)") from exc


UNREACHABLE = re.compile(r"Failed to fetch|Could not connect|error sending request|not found in the package registry")


def summarize_failure(output: str) -> str:
    """uv explains resolution failures after a '×' line; keep that explanation, on one line."""
    lines = [line.strip(" ×╰─▶│") for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if "No solution found" in line or "error:" in line), 0)
    return " ".join(line for line in lines[start:] if line)[:600].rstrip(".")


def needs_building(uv_output: str) -> bool:
    """uv stopped because a requirement has no wheel (only a source distribution), and --no-build holds."""
    return "Building source distributions is disabled" in uv_output or "with `--no-build`" in uv_output


def unreachable(uv_output: str) -> bool:
    """uv could not reach the index, or the index lacks a package the validator itself asked for."""
    return bool(UNREACHABLE.search(uv_output))


def cannot_build(uv_output: str) -> InfrastructureError:
    """The validator's limit, not the model's fault: it builds no requirement on the runner (a build runs the
    requirement's own code there, uncaged). Exit 2, never a failed gate."""
    return InfrastructureError(
        f"a requirement has no wheel, only a source distribution, and the validator builds nothing on the runner: "
        f"{summarize_failure(uv_output)}",
        "pin a version that publishes a wheel, or build the wheel yourself (pip wheel) and serve it from your index",
    )


def repair_hint(model_uri: str, uv_output: str) -> str:
    """What to run to repair a requirement uv could not satisfy."""
    match = _MISSING_VERSION.search(uv_output)
    if not match:
        return "fix requirements.txt, or repair it in place with `mlflow models update-pip-requirements`"
    bad = match["requirement"]
    name = re.split(r"[=<>!~\[]", bad)[0]
    uri = shlex.quote(model_uri)
    return (
        f"{bad} does not exist on the index: repair the model with "
        f'`mlflow models update-pip-requirements -m {uri} add "{name}==<a released version>"`, '
        f'after trying it with `mlflow models predict -m {uri} --pip-requirements-override "{name}==<version>"`'
    )


def compile_command(
    uv: str,
    requirements: Path,
    python_version: str,
    output: Path,
    constraints: Path | None,
    platform: str = SERVING_PLATFORM,
) -> list[str | Path]:
    """Resolve for a serving platform (Linux x86-64 unless told), whatever machine we run on."""
    command: list[str | Path] = [
        uv,
        "pip",
        "compile",
        requirements,
        # The validator's own interpreter: else uv looks for one, a virtualenv in its working directory first
        "--python",
        sys.executable,
        "--python-version",
        python_version,
        "--python-platform",
        platform,
        "--output-file",
        output,
        "--no-progress",
        # Wheels only: a source distribution's build backend is the requirement's code, and would run here,
        # uncaged (the docker stage's wheel download refuses them too).
        "--no-build",
    ]
    return [*command, "--constraints", constraints] if constraints else command


def export_command(uv: str, project_dir: Path) -> list[str | Path]:
    """The pins of a uv project's lock, as `uv sync --frozen --no-dev` would install them."""
    return [
        uv,
        "export",
        "--project",
        project_dir,
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-header",
        "--no-emit-project",
        "--format",
        "requirements-txt",
        "--no-progress",
    ]
