"""The remote engine works for real: it is another engine than the local one, it answers only clients that
present the certificate its CA signed, and the ports it publishes live on its own address, not on the host's
127.0.0.1, as with GitLab's docker:dind service."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.remote_engine import ENV_NAMES

DOCKER = "/usr/bin/docker"  # the 20.10 client that matches the engines; /usr/local/bin/docker works as well
DOCKER_TIMEOUT_S = 60
SERVE_TIMEOUT_S = 30
BASE_IMAGE = "python:3.11.7-slim"

pytestmark = pytest.mark.docker


def docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [DOCKER, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S
    )
    print(f"$ docker {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done


def local_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in ENV_NAMES}


def remote_env(remote_engine: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **remote_engine}


def engine_address(remote_engine: dict[str, str]) -> tuple[str, int]:
    url = urlsplit(remote_engine["DOCKER_HOST"])
    assert url.scheme == "tcp" and url.hostname and url.port, remote_engine["DOCKER_HOST"]
    return url.hostname, url.port


def identity(env: dict[str, str]) -> tuple[str, str]:
    info = docker(env, "info", "--format", "{{.ID}}\t{{.Name}}")
    assert info.returncode == 0, info.stderr
    engine_id, name = info.stdout.strip().split("\t")
    return engine_id, name


def ping(remote_engine: dict[str, str], with_client_certificate: bool) -> str:
    """GET /_ping over TLS, the server checked against the test CA by its IP address."""
    host, port = engine_address(remote_engine)
    certs = Path(remote_engine["DOCKER_CERT_PATH"])
    context = ssl.create_default_context(cafile=certs / "ca.pem")
    if with_client_certificate:
        context.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def http_get(host: str, port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_the_remote_engine_is_another_engine_over_tls(docker_engine: None, remote_engine: dict[str, str]) -> None:
    assert remote_engine["DOCKER_TLS_VERIFY"] == "1"
    remote_id, remote_name = identity(remote_env(remote_engine))
    local_id, local_name = identity(local_env())
    assert remote_id != local_id
    assert remote_name != local_name
    images = docker(remote_env(remote_engine), "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE)
    assert images.returncode == 0, f"{BASE_IMAGE} was not copied into the remote engine: {images.stderr}"


def test_the_remote_engine_refuses_clients_without_its_certificate(
    docker_engine: None, remote_engine: dict[str, str]
) -> None:
    plain = {**local_env(), "DOCKER_HOST": remote_engine["DOCKER_HOST"]}  # no DOCKER_TLS_VERIFY: plain HTTP
    refused = docker(plain, "version", "--format", "{{.Server.Version}}")
    assert refused.returncode != 0
    assert "HTTP request to an HTTPS server" in refused.stderr

    # TLS that trusts the server but brings no client certificate: the handshake is refused.
    with pytest.raises(ssl.SSLError, match="CERTIFICATE"):
        ping(remote_engine, with_client_certificate=False)
    assert ping(remote_engine, with_client_certificate=True) == "OK"


def test_a_published_port_lives_on_the_engine_address_only(docker_engine: None, remote_engine: dict[str, str]) -> None:
    env = remote_env(remote_engine)
    host, _ = engine_address(remote_engine)
    run = docker(env, "run", "-d", "-p", f"{host}::8000", BASE_IMAGE, "python", "-m", "http.server", "8000")
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    try:
        published = docker(env, "port", container, "8000/tcp")
        assert published.returncode == 0, published.stderr
        bound_host, _, bound_port = published.stdout.strip().splitlines()[0].rpartition(":")
        assert bound_host == host
        port = int(bound_port)

        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            try:
                status, body = http_get(host, port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert status == 200
        assert "Directory listing for /" in body

        # The host's loopback is not the engine's: nothing of the container there.
        try:
            _, elsewhere = http_get("127.0.0.1", port)
        except OSError:
            pass
        else:
            assert "Directory listing for /" not in elsewhere, f"the container answers on 127.0.0.1:{port}"
    finally:
        removed = docker(env, "rm", "-f", container)
        assert removed.returncode == 0, removed.stderr
