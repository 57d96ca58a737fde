"""The validator's own image (the project's Dockerfile), built here and run as CI runs it: with the
host's Docker socket mounted, on the engine's default bridge network. The serving container it starts
is reached through docker exec, with no network and nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.reports import docker_leftovers, read_report
from tests.integration.validator_image import docker, run_in_image
from tests.paths import ROOT


@pytest.mark.docker
def test_the_image_runs_the_cli_as_its_own_user(validator_image):
    helped = run_in_image(validator_image, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "validate" in helped.stdout
    user = docker("run", "--rm", "--entrypoint", "id", validator_image, "-u")
    assert user.stdout.strip() == "10001"


@pytest.mark.docker
def test_the_image_is_debian_13_with_a_docker_cli_that_builds_with_buildkit_and_no_daemon(validator_image):
    shell = "cat /etc/debian_version; docker buildx version; command -v dockerd || echo no dockerd"
    found = docker("run", "--rm", "--entrypoint", "sh", validator_image, "-c", shell)
    release, buildx, daemon = found.stdout.splitlines()
    assert release.startswith("13."), found.stdout + found.stderr
    assert buildx.startswith("github.com/docker/buildx ")
    assert daemon == "no dockerd"


@pytest.mark.docker
def test_with_the_socket_mounted_the_serving_container_has_no_network_and_is_reached_all_the_same(
    validator_image, tmp_path: Path
):
    output = tmp_path / "out"
    output.mkdir(mode=0o777)
    output.chmod(0o777)  # the image's user writes the report into the runner's directory
    model = ROOT / "examples" / "iris-classifier"
    validated = run_in_image(
        validator_image, "validate", "/model", "--stages", "docker", "--output-dir", "/out",
        mounts=(f"{model}:/model:ro", f"{output}:/out"),
    )  # fmt: skip

    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "the container has no network and publishes nothing" in validated.stdout
    assert read_report(output / "junit.xml")["docker"]["answers"] == "passed"
    assert docker_leftovers() == []


@pytest.mark.docker
def test_without_the_sockets_group_the_image_says_how_to_get_in(validator_image, tmp_path: Path):
    refused = run_in_image(validator_image, "validate", "/model", "--stages", "docker", group_add=False)
    assert refused.returncode == 2
    assert "--group-add $(stat -c %g /var/run/docker.sock)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


@pytest.mark.docker
@pytest.mark.parametrize("user", ["root", "the image's own"])
def test_in_an_unprivileged_job_container_the_model_is_caged_in_a_container_on_the_engine(
    validator_image, tmp_path: Path, user
):
    """GitLab's socket binding: a job container that is not privileged cannot make bubblewrap's namespaces,
    as root (no CAP_SYS_ADMIN) or as the image's user (no user namespaces under Docker's seccomp profile),
    so the model runs in a container of its own on the engine the socket gives, and the example passes."""
    output = tmp_path / "out"
    output.mkdir(mode=0o777)
    output.chmod(0o777)
    model = ROOT / "examples" / "iris-classifier"
    as_user = ("--user", "0") if user == "root" else ()
    validated = run_in_image(
        validator_image, "validate", "/model", "--stages", "static,venv", "--output-dir", "/out",
        mounts=(f"{model}:/model:ro", f"{output}:/out"),
        options=(*as_user, "--env", "CI=true", "--env", "GITLAB_CI=true"),
    )  # fmt: skip
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert read_report(output / "junit.xml")["venv"]["sandbox"] == "passed"
    assert "container on the Docker engine" in validated.stdout
    assert docker_leftovers() == []
