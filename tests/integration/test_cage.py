"""The cage, tried as an attacker who has read the code would, in the topologies users run:

- bubblewrap: the validator as root (CI's default here, most GitLab jobs' images), as an ordinary user,
  and in the project's image as root of a privileged job container on a TLS engine (GitLab's dind);
- a container on the engine, where bubblewrap cannot start: root without capabilities (an unprivileged
  job container), a user whose user namespaces are refused (GitHub's ubuntu-24.04 without the profile),
  the project's image unprivileged with the socket bound (GitLab's socket binding) and on a TLS engine
  (Kubernetes with a dind sidecar).

The hostile probe (models/hostile_model.py) reaches nothing, forks no more than the bound, cannot change
the verdict, and leaves nothing in uv's cache; a model that holds too much memory across its processes
is stopped. The shipped example passes, caged, in each; where neither backend can start the validation
is exit 2, never a failed gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, CliResult, assert_nothing_left, pins
from tests.integration.remote_engine import move_dependency_image
from tests.integration.reports import docker_leftovers, read_report, saved_answer
from tests.integration.services import Listener, NetnsHost, netns_host
from tests.integration.topologies import Topology, topology
from tests.integration.validator_image import run_in_image
from tests.paths import ROOT

pytestmark = pytest.mark.integration
CANARY = "canary-5d1c8e7f30"
MAX_PROCESSES = 256  # sandbox.max_processes' default
WROTE = b"the model wrote this"
PRIVILEGED = (
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
)  # fmt: skip
BACKEND_SAYS = {"bubblewrap": "bubblewrap:", "container": "container on the Docker engine"}
# Where each topology's validator cages the model when the engine is reachable.
BACKENDS = {
    "root": "bubblewrap",
    "user": "bubblewrap",
    "root-without-capabilities": "container",
    "user-without-user-namespaces": "container",
}
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
DECLARED = "192.0.2.1:443"


@dataclass(frozen=True)
class Job:
    """What a CI job has around the validator, and what the probe must not reach of it."""

    base: Path  # outside /tmp and /home, where nothing hides it by accident
    home: Path
    checkout: Path
    host_tmp_file: Path
    run_file: Path
    listener: Listener
    test_host: NetnsHost  # a host of the tests' own, in a network namespace: not loopback
    holder: subprocess.Popen[bytes]  # a process of the job's whose command line and environment hold the canary

    def env(self, topology: Topology) -> dict[str, str]:
        subprocess.run(["chown", "-R", f"{topology.owner}:{topology.owner}", str(self.base)], check=True)
        env = {
            "HOME": str(self.home),
            "GITHUB_WORKSPACE": str(self.checkout),
            "CI_PROJECT_DIR": str(self.checkout),
            "MLFLOW_TRACKING_TOKEN": CANARY,
            "GITHUB_TOKEN": CANARY,
            "CI": "true",
        }
        if topology.user_dir is None:  # root keeps the machine's uv cache; the user has one of its own
            env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", f"{os.environ.get('HOME', '/root')}/.cache/uv")
        return env

    def uv_cache(self, topology: Topology) -> Path:
        if topology.user_dir:
            return topology.user_dir / "uv-cache"
        return Path(os.environ.get("UV_CACHE_DIR", f"{os.environ.get('HOME', '/root')}/.cache/uv"))


@pytest.fixture(scope="module")
def job() -> Iterator[Job]:
    base = Path(tempfile.mkdtemp(prefix="mlflow-validator-job-", dir="/var/lib"))
    base.chmod(0o755)
    home, checkout = base / "home", base / "checkout"
    (home / ".docker").mkdir(parents=True)
    credentials = home / ".docker" / "config.json"
    credentials.write_text('{"auths": {"registry.example": {"auth": "c2VjcmV0"}}}')
    credentials.chmod(0o600)
    checkout.mkdir()
    (checkout / "deploy-key").write_text("a file of the checkout\n")
    host_tmp_file = Path(tempfile.mkstemp(prefix="mlflow-validator-probe-", dir="/tmp")[1])
    run_file = Path(tempfile.mkstemp(prefix="mlflow-validator-probe-", dir="/run")[1])
    for shared in (host_tmp_file, run_file):
        shared.write_text("a file of the host\n")
        shared.chmod(0o644)
    listener = Listener()
    holder = subprocess.Popen(["sh", "-c", "sleep 3600", CANARY], env={"SECRET": CANARY})
    try:
        with netns_host(base) as host:
            yield Job(base, home, checkout, host_tmp_file, run_file, listener, host, holder)
    finally:
        holder.kill()
        holder.wait()
        listener.close()
        shutil.rmtree(base)
        host_tmp_file.unlink()
        run_file.unlink()


@pytest.fixture(scope="module")
def probe_uri(registered, job: Job, remote_engine: dict[str, str]) -> str:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(registered.tracking_uri)
    frame = pd.DataFrame({"x": [0.5, 1.5]})
    probe = {
        "canary": CANARY,
        "sockets": ["/var/run/docker.sock"],
        "port": job.listener.port,
        "files": {
            "home-credentials": str(job.home / ".docker" / "config.json"),
            "checkout": str(job.checkout / "deploy-key"),
            "host-tmp": str(job.host_tmp_file),
            "host-run": str(job.run_file),
            "root-only": "/etc/shadow",
        },
        "writes": {"checkout": str(job.checkout / "probe-wrote-this"), "job-home": str(job.home / ".bashrc")},
        "forks": 400,
        "test_host": f"{job.test_host.address}:{job.test_host.port}",
        "engine": remote_engine["DOCKER_HOST"].removeprefix("tcp://"),
    }
    variants = {
        "probe": probe,
        "memory-hog": {**probe, "hog_mb": 900, "hogs": 3},
        "memfd-hog": {**probe, "memfd_mb": 2600},
        "forged-answers": {**probe, "forge_answers": True},
    }
    for name, config in variants.items():
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODELS_DIR / "hostile_model.py"),
                signature=infer_signature(frame, ["{}"]),  # no input example: logging it would run the probe here
                pip_requirements=pins("mlflow", "pandas", "numpy"),
                model_config=config,
                registered_model_name=name,
            )
    return registered.tracking_uri


def probe_run(job: Job, checks: Path, requests: Path, probe_uri: str, egress: bool = False) -> list[str]:
    """With `egress`, the model may reach one destination (TEST-NET's, that nothing answers) through the proxy:
    the probe then asks the proxy for everything it tries on its own."""
    return [
        "validate", "models:/probe/1", "--tracking-uri", probe_uri, "--stages", "venv",
        "--checks", str(checks), "--requests", str(requests), *(["--egress", DECLARED] if egress else []),
    ]  # fmt: skip


def connections(job: Job) -> tuple[int, int]:
    return job.listener.connections, job.test_host.connections


def assert_probe_held(
    job: Job, result: CliResult, output_dir: Path, uv_cache: Path, connections_before: tuple[int, int], backend: str
) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert BACKEND_SAYS[backend] in result.stdout
    report = read_report(output_dir / "junit.xml")
    assert report["venv"]["sandbox"] == "passed", report
    found = json.loads(saved_answer(output_dir, "venv", "user-one")["predictions"][0])
    assert found["reached"] == [], found
    assert 0 < found["forked"] < MAX_PROCESSES
    # the failing team check stays failed, and so does the run
    assert report["venv"]["test_gate.py::test_the_gate_holds"] == "failure", report
    assert connections(job) == connections_before
    assert not (job.checkout / "probe-wrote-this").exists()
    assert cache_files_written_by_the_model(uv_cache) == []


def one_request(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "one.json").write_text('{"dataframe_split": {"columns": ["x"], "data": [[0.5]]}}')
    return directory


def failing_team_check(directory: Path) -> Path:
    """A team check that fails: the probe must not be able to turn it into a pass or a skip."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "test_gate.py").write_text(
        "def test_the_gate_holds(model):\n    assert False, 'this check fails on purpose'\n"
    )
    return directory


def cache_files_written_by_the_model(cache: Path) -> list[Path]:
    return [path for path in cache.rglob("pandas/__init__.py") if WROTE in path.read_bytes()]


@pytest.mark.parametrize(
    ("where", "egress"),
    [("root", False), ("user", True), ("root-without-capabilities", True), ("user-without-user-namespaces", False)],
)
def test_the_probe_reaches_nothing_and_cannot_change_the_verdict(probe_uri, job: Job, where, egress):
    """With declared egress too (the proxy, the door in bubblewrap's cage and in a container): the probe's
    tunnels to the test host, the engine, the runner's loopback and the clouds' metadata address are refused,
    each named by the egress check."""
    with topology(where) as runner:
        checks, requests = failing_team_check(job.base / "checks"), one_request(job.base / "requests")
        before = connections(job)
        command = probe_run(job, checks, requests, probe_uri, egress)
        result = runner.run(command, cwd=job.checkout, env=job.env(runner))
        report_dir = job.checkout / "mlflow-validator-report"
        assert_probe_held(job, result, report_dir, job.uv_cache(runner), before, BACKENDS[where])
        if egress:
            assert read_report(report_dir / "junit.xml")["venv"]["egress"] == "failure"
            assert f"the model reached for {job.test_host.address}:{job.test_host.port}" in result.stdout
            assert "169.254.169.254:80" in (report_dir / "report.json").read_text()
        assert_nothing_left(result.scratch)
        shutil.rmtree(report_dir)
    assert docker_leftovers() == []


def test_without_the_cage_the_same_probe_reaches_what_the_cage_hides(probe_uri, job: Job):
    """What makes the tests above mean something: the probe's attempts work when nothing stops them."""
    with topology("root") as runner:
        (job.checkout / "mlflow-validator.yaml").write_text("checks: {sandbox: 'off'}\n")
        command = ["validate", "models:/probe/1", "--tracking-uri", probe_uri, "--stages", "venv"]
        command += ["--requests", str(one_request(job.base / "requests"))]
        env = job.env(runner)
        del env["CI"]
        before = connections(job)
        try:
            result = runner.run(command, cwd=job.checkout, env=env)
            output_dir = job.checkout / "mlflow-validator-report"
            found = json.loads(saved_answer(output_dir, "venv", "user-one")["predictions"][0])
        finally:
            for written in (job.checkout / "probe-wrote-this", Path("/tmp/probe-was-here"), job.home / ".bashrc"):
                written.unlink(missing_ok=True)
            (job.checkout / "mlflow-validator.yaml").unlink()
            shutil.rmtree(job.checkout / "mlflow-validator-report", ignore_errors=True)
        assert result.returncode == 0, result.stdout + result.stderr
        expected = {"environ", "cmdline", "loopback", "test-host", "read:checkout", "read:host-tmp", "read:host-run"}
        assert expected | {"read:root-only", "write:checkout", "write:model-log", "uid-0"} <= set(found["reached"])
        assert connections(job)[0] > before[0] and connections(job)[1] > before[1]


def run_in_job_container(
    job: Job, image: str, args: list[str], options: tuple[str, ...], engine: dict[str, str] | None = None
) -> CliResult:
    """The project's image as root of a job container that shares the host's network (the registry, the
    listener and the TLS engine are right there unless the cage holds), with the job's directory at the
    same path, on the engine the socket gives or on `engine` (its certificates mounted)."""
    env = job.env(Topology("root", (), None, 0)) | {"UV_CACHE_DIR": str(job.home / ".cache" / "uv")} | (engine or {})
    certificates = (f"{engine['DOCKER_CERT_PATH']}:{engine['DOCKER_CERT_PATH']}:ro",) if engine else ()
    done = run_in_image(
        image, *args,
        mounts=(f"{job.base}:{job.base}", *certificates),
        options=(
            *options, "--user", "0", "--network", "host", "--workdir", str(job.checkout),
            *(arg for name, value in env.items() for arg in ("--env", f"{name}={value}")),
        ),
    )  # fmt: skip
    print(done.stdout, done.stderr)
    return CliResult(done.returncode, done.stdout, done.stderr, job.base)


def run_probe_in_image(
    job: Job, probe_uri: str, image: str, options: tuple[str, ...], engine: dict[str, str] | None = None
) -> CliResult:
    checks, requests = failing_team_check(job.base / "checks"), one_request(job.base / "requests")
    return run_in_job_container(job, image, probe_run(job, checks, requests, probe_uri), options, engine)


@pytest.mark.docker
def test_in_the_projects_image_of_a_privileged_job_on_a_tls_engine_the_probe_reaches_nothing(
    probe_uri, job: Job, validator_image, remote_engine
):
    """GitLab's dind: bubblewrap cages the probe, and the shipped example passes every stage, the docker
    stage on the TLS engine. `--privileged` stands in
    as what it does (SYS_ADMIN, NET_ADMIN; no seccomp, AppArmor or masked /proc paths): this machine's
    engine lacks CAP_SYS_RESOURCE itself, so it cannot start a container with every capability."""
    before = connections(job)
    result = run_probe_in_image(job, probe_uri, validator_image, PRIVILEGED, remote_engine)
    report_dir = job.checkout / "mlflow-validator-report"
    assert_probe_held(job, result, report_dir, job.home / ".cache" / "uv", before, "bubblewrap")
    shutil.rmtree(report_dir)

    example = job.checkout / "iris-classifier"
    shutil.copytree(ROOT / "examples" / "iris-classifier", example)
    # A runner's cache: the dependency image a run on the host's engine built (the TLS engine reaches no mirror).
    local = run_in_job_container(job, validator_image, ["validate", str(example), "--stages", "docker"], (), None)
    assert local.returncode == 0, local.stdout + local.stderr
    shutil.rmtree(report_dir)
    move_dependency_image(local.stdout, remote_engine)
    command = ["validate", str(example), "--stages", "static,venv,docker"]
    result = run_in_job_container(job, validator_image, command, PRIVILEGED, remote_engine)
    shutil.rmtree(example)
    shutil.rmtree(report_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert BACKEND_SAYS["bubblewrap"] in result.stdout
    assert "the container has no network and publishes nothing" in result.stdout  # on the TLS engine


@pytest.mark.docker
def test_in_the_projects_image_of_an_unprivileged_job_the_probe_is_caged_in_a_container_and_reaches_nothing(
    probe_uri, job: Job, validator_image, remote_engine
):
    """GitLab's socket binding (the host's engine through its socket), then Kubernetes with a dind sidecar
    (a TLS engine, which holds the dependency image the first run built, as a runner's cache would)."""
    report_dir = job.checkout / "mlflow-validator-report"
    for engine in (None, remote_engine):
        before = connections(job)
        result = run_probe_in_image(job, probe_uri, validator_image, (), engine)
        assert_probe_held(job, result, report_dir, job.home / ".cache" / "uv", before, "container")
        shutil.rmtree(report_dir)
        assert docker_leftovers() == []
        if engine is None:
            move_dependency_image(result.stdout, remote_engine)


@pytest.mark.parametrize(
    ("where", "model"),
    [
        ("root", "memory-hog"),
        ("user", "memory-hog"),
        ("root", "memfd-hog"),
        ("user", "memfd-hog"),
        ("root-without-capabilities", "memory-hog"),
    ],
)
def test_memory_held_across_processes_is_bounded_for_the_cage_as_a_whole(probe_uri, job: Job, where, model):
    """Three processes of 900 MiB each, every one under the 2 GiB each may have: together, too much; and
    2.6 GiB in a memfd file, which no process maps, so that no resident size shows it."""
    with topology(where) as runner:
        config = job.checkout / "mlflow-validator.yaml"
        config.write_text("sandbox: {memory_mb: 2048}\n")
        command = ["validate", f"models:/{model}/1", "--tracking-uri", probe_uri, "--stages", "venv"]
        command += ["--requests", str(one_request(job.base / "requests"))]
        result = runner.run(command, cwd=job.checkout, env=job.env(runner))
        config.unlink()
        shutil.rmtree(job.checkout / "mlflow-validator-report")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "the model's processes together used" in result.stdout
        assert "sandbox.memory_mb: 2048" in result.stdout
        assert_nothing_left(result.scratch)


@pytest.mark.parametrize("where", ["root", "user"])
def test_answers_the_validator_was_not_asked_for_fail_the_model_not_the_validation(probe_uri, job: Job, where):
    with topology(where) as runner:
        command = ["validate", "models:/forged-answers/1", "--tracking-uri", probe_uri, "--stages", "venv"]
        command += ["--requests", str(one_request(job.base / "requests"))]
        result = runner.run(command, cwd=job.checkout, env=job.env(runner))
        shutil.rmtree(job.checkout / "mlflow-validator-report")
        assert result.returncode == 1, result.stdout + result.stderr  # the gate failed; exit 2 would not gate
        assert "the model process wrote answers the validator cannot read" in result.stdout
        assert_nothing_left(result.scratch)


def validate_the_example(
    runner: Topology, job: Job, env: dict[str, str] | None = None
) -> tuple[CliResult, dict[str, dict[str, str]]]:
    """The shipped example, copied into the checkout as a user's model directory would be."""
    example = job.checkout / "iris-classifier"
    shutil.copytree(ROOT / "examples" / "iris-classifier", example)
    command = ["validate", str(example), "--stages", "static,venv"]
    result = runner.run(command, cwd=job.checkout, env=job.env(runner) | (env or {}))
    report = read_report(job.checkout / "mlflow-validator-report" / "junit.xml")
    shutil.rmtree(example)
    shutil.rmtree(job.checkout / "mlflow-validator-report")
    return result, report


@pytest.mark.parametrize("where", list(BACKENDS))
def test_the_shipped_example_passes_caged_under_ci(job: Job, where):
    with topology(where) as runner:
        result, report = validate_the_example(runner, job)
        assert result.returncode == 0, result.stdout + result.stderr
        assert report["venv"]["sandbox"] == "passed" and BACKEND_SAYS[BACKENDS[where]] in result.stdout


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("root-without-capabilities", "Operation not permitted"),
        ("user-without-user-namespaces", "ENOSPC"),
    ],
)
def test_where_neither_cage_can_start_ci_cannot_validate_rather_than_fail_the_model(job: Job, where, said):
    with topology(where) as runner:
        result, report = validate_the_example(runner, job, env=NO_ENGINE)
        assert result.returncode == 2, result.stdout + result.stderr
        assert report["venv"]["sandbox"] == "error"
        last = result.stderr.strip().splitlines()[-1]
        assert said in last and "bubblewrap" in last and "Traceback" not in result.stderr
        assert "the Docker engine: Cannot connect" in last and "DOCKER_HOST" in last
        assert_nothing_left(result.scratch)
