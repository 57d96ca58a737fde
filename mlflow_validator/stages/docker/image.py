"""MLflow's serving image, built in two layers: the dependencies, keyed by the lock and reused, and the model.

MLflow's generator writes the Dockerfile `build-docker` builds. We keep its base image, its system
packages (nginx), its copy of the model, its environment and its entry point, and replace its two
installs (`pip install mlflow`, `_install_pyfunc_deps`), which resolve again at build time, with the
run's lock installed offline from wheels fetched on the host. The build then reaches no package index:
no index URL, credential or CA goes into it, and an unchanged lock reuses the dependency image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
from mlflow.models.flavor_backend_registry import get_flavor_backend

from mlflow_validator import commands
from mlflow_validator.errors import CommandError, InfrastructureError
from mlflow_validator.isolation import proxy_env
from mlflow_validator.model.lock import Lock
from mlflow_validator.settings import BuildNetwork
from mlflow_validator.stages.docker.engine import Docker, printed

SERVING_PORT = 8080
CACHE_LABEL = "org.mlflow-validator.cache"
DEPENDENCY_REPOSITORY = "mlflow-validator/serving-dependencies"
WHEELS = "wheels"  # in the build context, next to the lock
WHEELS_IN_BUILD = "/tmp/mlflow-validator-wheels"
# The oldest glibc the manylinux wheels may need is the slim image's (Debian bookworm, 2.36).
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
DOWNLOAD_PROCESSES = 4  # pip downloads are network-bound: four at once on any number of cores
UV_IN_BUILD = "/tmp/mlflow-validator-uv"
# uv installs the lock in a fifth of pip's time (23 s -> 5 s for the example model's 94 wheels). It comes as
# a wheel fetched with the lock's, installed out of the image's site-packages and removed in the same step,
# so the layer holds the lock's distributions and nothing else. Bytecode is compiled as pip's install in
# MLflow's own build would: without it every container (the serving one, the venv stage's container cage,
# read-only) compiles the libraries again at each start, 2 s for MLflow alone.
INSTALL_WHEELS = (
    f"RUN --mount=type=bind,source={WHEELS},target={WHEELS_IN_BUILD} "
    f"python -m pip install --quiet --no-index --no-deps --disable-pip-version-check --target {UV_IN_BUILD} "
    f"--find-links {WHEELS_IN_BUILD} uv "
    f"&& {UV_IN_BUILD}/bin/uv pip install --system --no-index --no-deps --no-cache --compile-bytecode "
    f"--find-links {WHEELS_IN_BUILD} "
    f"-r {WHEELS_IN_BUILD}/lock.txt "
    f"&& rm -rf {UV_IN_BUILD}"
)
INSTALL_LOCK = (
    "# Added by mlflow-validator: the run's lock, installed offline from wheels fetched on the host, in place of\n"
    "# MLflow's `pip install mlflow` and `_install_pyfunc_deps`, which resolve again while building.\n" + INSTALL_WHEELS
)


class UnexpectedDockerfile(InfrastructureError):
    """MLflow's generator wrote a Dockerfile of a shape this validator does not know."""


@dataclass(frozen=True)
class ServingDockerfile:
    """MLflow's generated Dockerfile, cut around its installs."""

    system: tuple[str, ...]  # FROM, the system packages, up to WORKDIR
    model_copy: str  # COPY model_dir/model /opt/ml/model
    finish: tuple[str, ...]  # the environment, permissions and the entry point

    @property
    def base_image(self) -> str:
        return next(line.split()[1] for line in self.system if line.startswith("FROM "))

    @classmethod
    def parse(cls, text: str) -> ServingDockerfile:
        lines = text.splitlines()
        try:
            workdir = lines.index("WORKDIR /opt/mlflow")
            copy = next(i for i, line in enumerate(lines) if line.startswith("COPY model_dir/model "))
            install = next(i for i, line in enumerate(lines) if "_install_pyfunc_deps" in line)
        except (ValueError, StopIteration):
            raise UnexpectedDockerfile(
                f"MLflow {mlflow.__version__}'s generated Dockerfile lacks WORKDIR /opt/mlflow, the model's COPY or "
                "_install_pyfunc_deps, so its installs cannot be replaced by the lock",
                "report it to mlflow-validator with the Dockerfile in docker-context/",
            ) from None
        return cls(tuple(lines[: workdir + 1]), lines[copy], tuple(lines[install + 1 :]))

    def dependencies(self) -> str:
        return "\n".join([*self.system, INSTALL_LOCK]) + "\n"

    def model(self, dependency_image: str) -> str:
        return "\n".join([f"FROM {dependency_image}", self.model_copy, *self.finish]) + "\n"


def generate(model_dir: Path, context_dir: Path) -> ServingDockerfile:
    """MLflow's own generator, the one `build-docker` and `generate-dockerfile` use, with the slim Python base
    image. In this process: MLflow is imported already, and its CLI would take 3 s to import it again."""
    for chatter in ("mlflow.models.flavor_backend_registry", "mlflow.pyfunc.backend"):
        logging.getLogger(chatter).setLevel(logging.WARNING)  # "Selected backend …": our choice, not news
    backend = get_flavor_backend(str(model_dir), docker_build=True, env_manager="local")
    backend.generate_dockerfile(
        str(model_dir), str(context_dir), mlflow_home=None, install_java=None, install_mlflow=False
    )
    return ServingDockerfile.parse((context_dir / "Dockerfile").read_text())


def dependency_tag(dockerfile: ServingDockerfile, base_image_id: str, lock: Lock) -> str:
    """Same base image, system layer, MLflow and lock: same dependency image."""
    key = hashlib.sha256()
    pins = "\n".join(f"{name}=={version}" for name, version in sorted(lock.pins.items()))
    for part in (base_image_id, dockerfile.dependencies(), mlflow.__version__, pins):
        key.update(part.encode() + b"\0")
    return f"{DEPENDENCY_REPOSITORY}:{key.hexdigest()[:16]}"


def pip_env(env: Mapping[str, str], network: BuildNetwork) -> dict[str, str]:
    """pip on the host, reaching the index exactly as uv did for the lock: the same settings, and not
    this machine's pip.conf (uv never read it)."""
    pip = {name: env[name] for name in ("PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME") if name in env}
    pip |= {**proxy_env(network), "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if network.ca_bundle:
        pip["PIP_CERT"] = str(network.ca_bundle)
    if network.index_url:
        pip["PIP_INDEX_URL"] = network.index_url
    if network.extra_index_urls:
        pip["PIP_EXTRA_INDEX_URL"] = " ".join(network.extra_index_urls)
    return pip


def fetch_wheels(
    pins: Mapping[str, str],
    lock: Path,
    python_version: str,
    destination: Path,
    env: Mapping[str, str],
    timeout_s: float,
) -> None:
    """Download the wheels of `pins` (and uv's, the build's installer) for the serving platform into
    `destination`, with `lock` (their requirements file) as lock.txt. pip fetches one file at a time: the pins
    are split among DOWNLOAD_PROCESSES downloads that run at once."""
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "lock.txt").write_text(lock.read_text())
    # pip's own temporary files go with the run's work directory, also when the download is stopped.
    scratch = destination.parent / "pip-tmp"
    scratch.mkdir(exist_ok=True)
    wanted = [f"{name}=={pinned}" for name, pinned in sorted(pins.items())] + [f"uv=={version('uv')}"]
    shares = [scratch / f"share-{index}.txt" for index in range(DOWNLOAD_PROCESSES)]
    for index, share in enumerate(shares):
        share.write_text("\n".join(wanted[index::DOWNLOAD_PROCESSES]) + "\n")
    download_env = {**env, "TMPDIR": str(scratch)}
    with ThreadPoolExecutor(max_workers=DOWNLOAD_PROCESSES) as pool:
        downloads = [
            # Each in a copy of this thread's context: a stop asked of this thread stops them too.
            pool.submit(copy_context().run, _pip_download, share, python_version, destination, download_env, timeout_s)
            for share in shares
        ]
        results = [download.result() for download in downloads]
    for result in results:
        _refuse_failed_download(result, python_version)


def _pip_download(
    requirements: Path, python_version: str, destination: Path, env: Mapping[str, str], timeout_s: float
) -> commands.CommandResult:
    major_minor = "".join(python_version.split(".")[:2])
    return commands.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
         *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
         "--python-version", major_minor, "--implementation", "cp",
         "--abi", f"cp{major_minor}", "--abi", "abi3", "--abi", "none",
         "-r", requirements, "--dest", destination],
        env=env,
        timeout_s=timeout_s,
        check=False,
    )  # fmt: skip


def _refuse_failed_download(result: commands.CommandResult, python_version: str) -> None:
    if not result.ok:
        raise CommandError(
            f"the lock's wheels for Linux x86-64, Python {python_version}, could not be downloaded: "
            f"{commands.last_line(result.output)}",
            "the image installs the lock offline from wheels: a package with no wheel for the serving platform "
            "needs one (build it and add it to your index)",
            output_tail=result.tail(),
        )


def image_exists(docker: Docker, image: str) -> bool:
    return docker.run("image", "inspect", "--format", "{{.Id}}", image, timeout_s=60, check=False).ok


def image_id(docker: Docker, image: str, pull_timeout_s: float) -> str:
    """The ID of `image`, pulled first when the engine lacks it (as the build would)."""
    if not image_exists(docker, image):
        docker.run("pull", "--quiet", image, timeout_s=pull_timeout_s)
    return printed(docker.run("image", "inspect", "--format", "{{.Id}}", image, timeout_s=60))


def build(
    docker: Docker,
    context_dir: Path,
    dockerfile: str,
    tag: str,
    labels: Mapping[str, str],
    network: BuildNetwork,
    log_file: Path,
    timeout_s: float,
    on_line: Callable[[str], None] | None = None,
) -> commands.CommandResult:
    """`docker build` with BuildKit, the log streamed to `log_file`. Proxies are docker's predefined
    build args, which stay out of the image's history; the build needs them only for apt."""
    (context_dir / "Dockerfile").write_text(dockerfile)
    proxies = [arg for name, value in proxy_env(network).items() for arg in ("--build-arg", f"{name}={value}")]
    return docker.run(
        "build", "--progress", "plain", "--platform", "linux/amd64", "--tag", tag,
        *(arg for name, value in labels.items() for arg in ("--label", f"{name}={value}")),
        *proxies, context_dir,
        timeout_s=timeout_s,
        check=False,
        stream_to=log_file,
        on_line=on_line,
    )  # fmt: skip


@dataclass(frozen=True)
class KeptImage:
    """The validated image, under the user's tag; `digest` (repository@sha256:…) once pushed."""

    tag: str
    id: str
    digest: str = ""

    def as_properties(self) -> dict[str, str]:
        return {f"image.{key}": value for key, value in vars(self).items() if value}


def keep(docker: Docker, image: str, tag: str, push: bool, push_timeout_s: float) -> KeptImage:
    """Tag `image` as `tag`, and push it when asked; a refused push is the registry's problem (exit 2)."""
    docker.run("tag", image, tag, timeout_s=60)
    if push:
        pushed = docker.run("push", tag, timeout_s=push_timeout_s, check=False)
        if not pushed.ok:
            raise CommandError(
                f"docker push {tag} failed: {commands.last_line(pushed.output)}",
                "log in to the registry (`docker login`) with a user that may push to this repository",
                output_tail=pushed.tail(),
            )
    fields = '{"id": {{json .Id}}, "digests": {{json .RepoDigests}}}'
    inspected = json.loads(printed(docker.run("image", "inspect", "--format", fields, tag, timeout_s=60)))
    repository = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    # Only a push gives the tag's repository a digest; another repository's (a pull's) is not this one.
    digest = next((d for d in inspected["digests"] or [] if push and d.split("@")[0] == repository), "")
    return KeptImage(tag, inspected["id"], digest)
