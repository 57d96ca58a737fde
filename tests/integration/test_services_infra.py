"""The session services work for real: the private index serves its package only to those who give the
password (to pip and to uv), and an image pushed to the loopback registry pulls back unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.integration.services import LOOPBACK, PrivateIndex, direct_session

INSTALL_TIMEOUT_S = 300
DOCKER_TIMEOUT_S = 600
BASE_IMAGE = "python:3.11.7-slim"


def only_the_given_index() -> dict[str, str]:
    """No pip or uv configuration of this machine (find-links, extra indexes, constraints, caches of other
    indexes) and no proxy for loopback: whatever is installed came from the index on the command line."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PIP_", "UV_"))}
    return {
        **env,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_NO_CONFIG": "1",
        "UV_NO_CACHE": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_PROXY": LOOPBACK,
        "no_proxy": LOOPBACK,
    }


def run(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
    print(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done


def pip_download(index_url: str, requirement: str, destination: Path) -> subprocess.CompletedProcess[str]:
    """-vv: pip reports an index's 401 only at debug level, then says no version matches, as for a typo."""
    return run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-vv",
            "--no-input",
            "--keyring-provider",
            "disabled",
            "--no-deps",
            "--dest",
            str(destination),
            "--index-url",
            index_url,
            requirement,
        ],
        INSTALL_TIMEOUT_S,
        only_the_given_index(),
    )


def fresh_venv(path: Path) -> Path:
    """A uv venv on this interpreter; returns its python."""
    create = [find_uv_bin(), "venv", "--python", sys.executable, str(path)]
    created = run(create, INSTALL_TIMEOUT_S, only_the_given_index())
    assert created.returncode == 0, created.stderr
    return path / "bin" / "python"


def uv_pip_install(python: Path, index_url: str, requirement: str) -> subprocess.CompletedProcess[str]:
    install = [find_uv_bin(), "pip", "install", "--python", str(python), "--index-url", index_url, requirement]
    return run(install, INSTALL_TIMEOUT_S, only_the_given_index())


def test_the_index_answers_only_with_the_password(private_index: PrivateIndex) -> None:
    project = f"{private_index.url}mv-private-helper/"
    with direct_session() as session:
        anonymous = session.get(project, timeout=10)
        wrong = session.get(project, auth=(private_index.user, "not-the-password"), timeout=10)
        right = session.get(project, auth=(private_index.user, private_index.password), timeout=10)
        elsewhere = session.get(
            f"{private_index.url}numpy/",
            auth=(private_index.user, private_index.password),
            allow_redirects=False,  # with fallback on, a redirect to pypi.org; never followed here
            timeout=10,
        )

    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 403, 200)
    assert "mv_private_helper-1.0.0-py3-none-any.whl" in right.text
    assert elsewhere.status_code == 404, "the index must not send anyone to PyPI"


def test_pip_downloads_the_private_package_with_the_password(private_index: PrivateIndex, tmp_path: Path) -> None:
    downloaded = pip_download(private_index.authenticated_url, private_index.package, tmp_path)

    assert downloaded.returncode == 0, downloaded.stderr
    assert [wheel.name for wheel in tmp_path.iterdir()] == ["mv_private_helper-1.0.0-py3-none-any.whl"]


def test_pip_is_refused_without_the_password(private_index: PrivateIndex, tmp_path: Path) -> None:
    refused = pip_download(private_index.url, private_index.package, tmp_path)

    assert refused.returncode != 0
    assert f"Could not fetch URL {private_index.url}mv-private-helper/: 401" in refused.stdout + refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_uv_installs_the_private_package_with_the_password_in_the_url(
    private_index: PrivateIndex, tmp_path: Path
) -> None:
    python = fresh_venv(tmp_path / "venv")

    installed = uv_pip_install(python, private_index.authenticated_url, private_index.package)

    assert installed.returncode == 0, installed.stderr
    scaled = run([str(python), "-c", "from mv_private_helper import scale; print(scale(1.5))"], 60)
    assert scaled.stdout.strip() == "3.0", scaled.stderr


def test_uv_is_refused_without_the_password(private_index: PrivateIndex, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")

    refused = uv_pip_install(python, private_index.url, private_index.package)

    assert refused.returncode != 0
    assert "401" in refused.stderr
    assert private_index.password not in refused.stdout + refused.stderr


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], DOCKER_TIMEOUT_S)


def image_id(reference: str) -> str:
    inspected = docker("image", "inspect", "--format", "{{.Id}}", reference)
    assert inspected.returncode == 0, inspected.stderr
    return inspected.stdout.strip()


def require_base_image() -> None:
    """Like the docker engine: skipped where missing, except on CI, which must run the docker tests."""
    if docker("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).returncode == 0:
        return
    problem = f"{BASE_IMAGE} is not on this engine; tests/infra/docker-bootstrap.sh 3.11.7 makes it"
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.mark.docker
def test_an_image_pushed_to_the_registry_pulls_back_unchanged(docker_engine: None, image_registry: str) -> None:
    require_base_image()
    tag = f"{image_registry}/mv-test/python:1"
    assert docker("tag", BASE_IMAGE, tag).returncode == 0
    try:
        pushed = docker("push", tag)
        assert pushed.returncode == 0, pushed.stderr
        assert docker("rmi", tag).returncode == 0

        pulled = docker("pull", tag)

        assert pulled.returncode == 0, pulled.stderr
        assert image_id(tag) == image_id(BASE_IMAGE)
        with direct_session() as session:
            listed = session.get(f"http://{image_registry}/v2/mv-test/python/tags/list", timeout=10)
        assert listed.json() == {"name": "mv-test/python", "tags": ["1"]}
    finally:
        docker("rmi", tag)  # only our tag: the base image keeps its own
