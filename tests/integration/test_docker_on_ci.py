"""The docker stage where CI runs it: a remote engine over TLS, and models that cannot load in the container,
which must fail the gate fast and say why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, assert_nothing_left, pins
from tests.integration.remote_engine import move_dependency_image
from tests.integration.reports import docker_leftovers, properties, read_report
from tests.integration.services import direct_session

DOCKER = os.environ.get("MLFLOW_VALIDATOR_DOCKER_CLI", "docker")


def log_loading_model(name: str, mode: str, extra_requirements: tuple[str, ...] = ()) -> None:
    """A version of `name` whose loading goes `mode`; extra requirements make its lock (and image) its own."""
    import mlflow
    import pandas as pd

    with mlflow.start_run(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOADING_MODEL_BEING_LOGGED", "1")
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODELS_DIR / "loading_model.py"),
            input_example=pd.DataFrame({"x": [1.0, 2.0]}),
            pip_requirements=[*pins("mlflow", "pandas", "numpy"), *extra_requirements],
            model_config={"mode": mode},
            registered_model_name=name,
        )


@pytest.fixture(scope="module")
def loading_models(registered) -> str:
    import mlflow

    mlflow.set_tracking_uri(registered.tracking_uri)
    for mode in ("crash", "hang", "memory"):
        log_loading_model(f"loading-{mode}", mode)
    # Two versions of one model with a lock of their own, so that runs of them build its dependency image.
    log_loading_model("two-versions", "ok", pins("pyyaml"))
    log_loading_model("two-versions", "crash", pins("pyyaml"))
    log_loading_model("early-build", "ok", pins("tenacity"))
    log_loading_model("early-build-crash", "crash", pins("jinja2"))
    log_loading_model("cancelled-build", "ok", pins("packaging"))
    log_loading_model("cancelled-container", "hang", pins("packaging"))
    return registered.tracking_uri


def docker_stage(run_cli, tracking_uri: str, model: str, *flags: str, env: dict[str, str] | None = None):
    return run_cli("validate", model, "--tracking-uri", tracking_uri, "--stages", "docker", *flags, env=env)


@pytest.mark.docker
def test_a_remote_engine_over_tls_serves_a_container_without_network(registered, run_cli, docker_engine, remote_engine):
    local = docker_stage(run_cli, registered.tracking_uri, "models:/iris-classifier/1")
    assert local.returncode == 0, local.stdout
    move_dependency_image(local.stdout, remote_engine)  # the remote engine has no way out to Debian's mirror

    remote = docker_stage(run_cli, registered.tracking_uri, "models:/iris-classifier/1", env=remote_engine)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert "the container has no network and publishes nothing" in remote.stdout
    assert "dependencies: reused mlflow-validator/serving-dependencies" in remote.stdout


@pytest.mark.docker
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("model", "flags", "message", "within_s"),
    [
        ("loading-crash", ("--image-tag", "validated/crash:1"), "FileNotFoundError: weights.bin is missing", 120),
        ("loading-memory", ("--memory", "512m"), "the model needs more than 512 MiB (docker.memory)", 120),
        ("loading-hang", ("--config", "budget.yaml"), "the model did not load within 20 s", 120),
    ],
)
def test_a_model_that_cannot_load_in_the_container_fails_fast_and_says_why(
    loading_models, run_cli, docker_engine, tmp_path, model, flags, message, within_s
):
    (tmp_path / "budget.yaml").write_text("budgets:\n  max_load_seconds: 20\n")
    started = time.monotonic()
    result = docker_stage(run_cli, loading_models, f"models:/{model}/1", *flags)
    report = read_report(tmp_path / "mlflow-validator-report" / "junit.xml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["docker"]["start-container"] == "failure"
    assert message in result.stdout
    start_line = next(line for line in result.stdout.splitlines() if " start-container " in line and "FAIL" in line)
    assert float(start_line.split()[3].rstrip("s")) < within_s
    assert time.monotonic() - started < 600
    assert report["docker"]["keep-image"] == "skipped"  # a failed image is never kept, whatever --image-tag says
    assert not (tmp_path / "mlflow-validator-report" / "image.json").exists()


@pytest.mark.docker
def test_the_validated_image_is_kept_under_its_tag_and_pushed_by_digest(
    registered, run_cli, docker_engine, image_registry, tmp_path: Path
):
    tag = f"{image_registry}/validated/iris:1"
    result = docker_stage(run_cli, registered.tracking_uri, "models:/iris-classifier/1", "--image-tag", tag, "--push")

    assert result.returncode == 0, result.stdout + result.stderr
    output_dir = tmp_path / "mlflow-validator-report"
    kept = json.loads((output_dir / "image.json").read_text())
    assert kept["tag"] == tag and kept["id"].startswith("sha256:")
    assert kept["digest"].startswith(f"{image_registry}/validated/iris@sha256:")
    facts = properties(output_dir / "junit.xml")
    assert (facts["image.tag"], facts["image.id"], facts["image.digest"]) == (kept["tag"], kept["id"], kept["digest"])
    assert kept["digest"] in result.stdout
    manifest = direct_session().head(
        f"http://{image_registry}/v2/validated/iris/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=30,
    )
    assert manifest.headers["Docker-Content-Digest"] == kept["digest"].split("@")[1]
    tags = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{json .RepoTags}}", tag], capture_output=True, text=True, timeout=60
    )
    assert json.loads(tags.stdout) == [tag]  # the run's own tag is gone; the kept one stays
    subprocess.run([DOCKER, "rmi", tag], capture_output=True, timeout=60, check=True)
    assert docker_leftovers() == []


def start_validation(tracking_uri: str, model: str, cwd: Path, *flags: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mlflow_validator", "validate", model, "--tracking-uri", tracking_uri]
    scratch = cwd / "tmpdir"
    scratch.mkdir(parents=True)
    return subprocess.Popen(
        [*command, "--stages", "docker", "--output-dir", str(cwd / "report"), *flags],
        cwd=cwd, env={**os.environ, "TMPDIR": str(scratch)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_two_versions_validated_at_once_on_one_engine_each_get_their_verdict(
    loading_models, docker_engine, tmp_path: Path
):
    good = start_validation(loading_models, "models:/two-versions/1", tmp_path / "good")
    time.sleep(3)
    broken = start_validation(loading_models, "models:/two-versions/2", tmp_path / "broken")
    good_output, _ = good.communicate(timeout=800)
    broken_output, _ = broken.communicate(timeout=800)

    assert good.returncode == 0, good_output
    assert broken.returncode == 1, broken_output
    assert "FileNotFoundError: weights.bin is missing" in broken_output
    assert docker_leftovers() == []


@pytest.mark.docker
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("model", "phase"),
    [
        ("models:/cancelled-build/1", "        docker build [1/"),  # the dependency image is being built
        ("models:/cancelled-container/1", " PASS  docker build-image"),  # the container is starting
    ],
)
def test_sigterm_in_each_phase_leaves_nothing_labelled(loading_models, docker_engine, tmp_path: Path, model, phase):
    (tmp_path / "budget.yaml").write_text("budgets:\n  max_load_seconds: 120\n")
    child = start_validation(loading_models, model, tmp_path, "--config", "budget.yaml")
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith(phase):
            break
    time.sleep(2)
    child.send_signal(signal.SIGTERM)
    rest, _ = child.communicate(timeout=120)

    assert child.returncode == 2, "".join(seen) + rest
    assert read_report(tmp_path / "report" / "junit.xml")["docker"]["interrupted"] == "error"
    assert docker_leftovers() == []


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_with_the_cores_for_it_the_dependency_image_builds_while_the_venv_stage_runs(loading_models, run_cli):
    cached = subprocess.run(
        [DOCKER, "images", "--quiet", "--filter", "label=org.mlflow-validator.cache"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    if images := cached.stdout.split():  # an earlier session on this engine may have built it: build it anew
        subprocess.run([DOCKER, "rmi", "--force", *images], capture_output=True, timeout=300, check=False)
    result = run_cli("validate", "models:/early-build/1", "--tracking-uri", loading_models, "--build-during-venv")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "during the venv stage" in result.stdout
    assert docker_leftovers() == []


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_a_venv_failure_stops_the_build_started_next_to_it(loading_models, run_cli):
    started = time.monotonic()
    result = run_cli("validate", "models:/early-build-crash/1", "--tracking-uri", loading_models, "--build-during-venv")

    assert result.returncode == 1, result.stdout + result.stderr
    assert read_report(Path(result.scratch).parent / "mlflow-validator-report" / "junit.xml")["docker"] == {
        "docker": "skipped"
    }
    assert time.monotonic() - started < 120  # the dependency build alone takes longer: it was stopped
    assert_nothing_left(result.scratch)
    assert docker_leftovers() == []
