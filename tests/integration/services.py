"""Real services on 127.0.0.1 for integration tests, started once per session and stopped when it ends.

Registered as a plugin by the root conftest, so every test can ask for them by name:

- ``private_index``: a package index that, like the private indexes companies keep their own packages on,
  answers nothing without a password. It serves one package that exists nowhere else
  (``mv-private-helper==1.0.0``), so an install that succeeds can only have reached this index, with its
  credentials. It exists because ``--index-url`` pointing at an authenticated index is how real users get
  their private dependencies, and only a real server that answers 401 shows whether pip and uv (and
  anything we build around them) pass the credentials on, and what happens when they do not.
- ``image_registry``: a Docker image registry (Debian's ``docker-registry``, i.e. distribution 2.8)
  without authentication. It exists because images are pulled from and pushed to registries, and this
  machine reaches no public one: a registry on loopback lets tests push and pull real images. The
  docker engine treats 127.0.0.0/8 as an insecure registry by default, so plain HTTP is enough.

Both run as child processes in their own session, log to a file in their temporary directory (shown
when they fail to start), and are stopped with SIGTERM, then SIGKILL, whatever the tests did.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
from uv import find_uv_bin

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
BUILD_TIMEOUT_S = 300
APT_TIMEOUT_S = 600
LOG_TAIL_CHARS = 3000

INDEX_USER = "validator-ci"
HELPER_NAME = "mv-private-helper"
HELPER_VERSION = "1.0.0"
HELPER_PYPROJECT = f"""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{HELPER_NAME}"
version = "{HELPER_VERSION}"
description = "Exists only on the integration tests' private index."
requires-python = ">=3.8"

[tool.setuptools]
packages = ["mv_private_helper"]
"""
HELPER_MODULE = '''\
"""Exists only on the integration tests' private index."""


def scale(x: float) -> float:
    return 2.0 * x
'''


@dataclass(frozen=True)
class PrivateIndex:
    url: str  # http://127.0.0.1:PORT/simple/, without credentials: answers 401
    user: str
    password: str
    authenticated_url: str  # http://user:password@127.0.0.1:PORT/simple/
    package: str  # the requirement only this index can satisfy: "mv-private-helper==1.0.0"


class ServiceNotUp(Exception):
    """The service has not answered yet; worth asking again."""


class ServiceFailed(RuntimeError):
    """The service cannot come up (it exited, or a setup command failed); asking again would not help."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def direct_session() -> requests.Session:
    """Loopback requests go straight to the service, never through a proxy from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log.exists() else "(no log written)"


def run_checked(args: Sequence[str], timeout_s: float, env: dict[str, str] | None = None) -> None:
    """Run a setup command, bounded; on failure, raise with its output."""
    done = subprocess.run(
        list(args), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise ServiceFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"[-LOG_TAIL_CHARS:])


@contextmanager
def child_process(args: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start `args` in its own session with output appended to `log`; stop the whole group on exit."""
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the group is already gone
        os.killpg(process.pid, signum)


def wait_until_answers(process: subprocess.Popen[bytes], log: Path, url: str, auth: tuple[str, str] | None) -> None:
    """Until GET `url` answers 200; fail at once if the process exits, after STARTUP_TIMEOUT_S if it never answers."""

    def answers() -> None:
        if process.poll() is not None:
            raise ServiceFailed(f"{process.args!r} exited {process.returncode}:\n{log_tail(log)}")
        try:
            with direct_session() as session:
                if session.get(url, auth=auth, timeout=2).status_code == 200:
                    return
        except requests.RequestException:
            pass
        raise ServiceNotUp(url)

    try:
        Retrying(
            retry=retry_if_exception_type(ServiceNotUp),
            stop=stop_after_delay(STARTUP_TIMEOUT_S),
            wait=wait_fixed(0.5),
            reraise=True,
        )(answers)
    except ServiceNotUp:
        raise ServiceFailed(f"{url} did not answer 200 within {STARTUP_TIMEOUT_S} s:\n{log_tail(log)}") from None


# --- the private package index ---------------------------------------------------------------------------------


def build_helper_wheel(workdir: Path, packages: Path) -> Path:
    """Build mv-private-helper's wheel with uv (setuptools comes from the usual index) into `packages`."""
    source = workdir / "source"
    (source / "mv_private_helper").mkdir(parents=True)
    (source / "pyproject.toml").write_text(HELPER_PYPROJECT)
    (source / "mv_private_helper" / "__init__.py").write_text(HELPER_MODULE)
    dist = workdir / "dist"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    build = [find_uv_bin(), "build", "--wheel", "--python", sys.executable, "--out-dir", str(dist), str(source)]
    run_checked(build, BUILD_TIMEOUT_S, env)
    (wheel,) = dist.glob("*.whl")
    packages.mkdir()
    return Path(shutil.copy2(wheel, packages))


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """Apache's MD5 scheme (`htpasswd -m`): what pypiserver's passlib reads, and quick to check per request."""
    with warnings.catch_warnings():  # passlib 1.7.4 imports the `crypt` module Python 3.11 deprecates
        warnings.filterwarnings("ignore", "'crypt' is deprecated", DeprecationWarning)
        from passlib.apache import HtpasswdFile  # here: every test session loads this module, few use the index

    passwords = HtpasswdFile(str(path), new=True, default_scheme="apr_md5_crypt")
    passwords.set_password(user, password)
    passwords.save()


def pypiserver_command(port: int, packages: Path, htpasswd: Path, log: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pypiserver",
        "run",
        "--verbose",  # each request and its status in the log
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--authenticate",
        "download,list,update",
        "--passwords",
        str(htpasswd),
        "--disable-fallback",
        "--log-file",
        str(log),
        "--log-stream",
        "none",
        str(packages),
    ]


def private_index_for(port: int, user: str, password: str) -> PrivateIndex:
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return PrivateIndex(
        url=f"http://{LOOPBACK}:{port}/simple/",
        user=user,
        password=password,
        authenticated_url=f"http://{credentials}@{LOOPBACK}:{port}/simple/",
        package=f"{HELPER_NAME}=={HELPER_VERSION}",
    )


@pytest.fixture(scope="session")
def private_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateIndex]:
    """pypiserver serving only mv-private-helper, with a password for download, list and update."""
    root = tmp_path_factory.mktemp("private-index")
    packages = root / "packages"
    build_helper_wheel(root / "build", packages)
    port = free_port()
    index = private_index_for(port, INDEX_USER, secrets.token_urlsafe(16))
    htpasswd = root / "htpasswd"
    write_htpasswd(htpasswd, index.user, index.password)
    log = root / "pypiserver.log"
    with child_process(pypiserver_command(port, packages, htpasswd, log), log) as server:
        wait_until_answers(server, log, index.url, auth=(index.user, index.password))
        yield index


# --- the image registry --------------------------------------------------------------------------------------


def docker_registry_binary() -> str:
    """Debian's docker-registry, installed from the mirror (bounded) where missing. Its own service is not used."""
    found = shutil.which("docker-registry")
    if found:
        return found
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked([*as_root, "apt-get", "update", "-qq"], APT_TIMEOUT_S, env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry"]
    run_checked([*as_root, *install], APT_TIMEOUT_S, env)
    found = shutil.which("docker-registry")
    if not found:
        raise ServiceFailed("apt-get installed docker-registry but no docker-registry binary is on PATH")
    return found


def registry_config(address: str, storage: Path) -> dict[str, object]:
    """Distribution's configuration: files under `storage`, plain HTTP on `address`, no auth, nothing else."""
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address, "secret": secrets.token_urlsafe(16)},
    }


@pytest.fixture(scope="session")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1; yields its address, "127.0.0.1:PORT", to prefix image names with."""
    binary = docker_registry_binary()
    root = tmp_path_factory.mktemp("image-registry")
    storage = root / "storage"
    address = f"{LOOPBACK}:{free_port()}"
    config = root / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(address, storage)))
    log = root / "registry.log"
    try:
        with child_process([binary, "serve", str(config)], log) as registry:
            wait_until_answers(registry, log, f"http://{address}/v2/", auth=None)
            yield address
    finally:
        shutil.rmtree(storage, ignore_errors=True)  # pushed layers: hundreds of MB nobody reads again


class Listener:
    """A service on the host's loopback that counts who connects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@dataclass(frozen=True)
class NetnsHost:
    """A host of the tests' own: a network namespace joined to this one by a veth pair, with a TCP
    service that writes a line for each connection (or each request). Not loopback, so a cage that only
    blocked loopback would be caught."""

    address: str
    port: int
    connections_file: Path

    @property
    def connections(self) -> int:
        return len(self.lines())

    def lines(self) -> list[str]:
        return self.connections_file.read_text().splitlines() if self.connections_file.exists() else []

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


COUNTING_SERVICE = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    connection, peer = server.accept()
    with open(sys.argv[3], "a") as log:
        log.write(f"{peer}\\n")
    connection.close()
"""


@contextmanager
def netns_host(
    workdir: Path, service: Sequence[str] = ("-c", COUNTING_SERVICE), env: dict[str, str] | None = None
) -> Iterator[NetnsHost]:
    """`service` (python's arguments, then ADDRESS PORT LOG_FILE) on a host of its own."""
    name = f"mvhost-{secrets.token_hex(3)}"
    subnet = f"10.233.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}"
    base = subnet.rsplit(".", 1)
    host_side, guest = f"{base[0]}.{int(base[1]) + 1}", f"{base[0]}.{int(base[1]) + 2}"
    commands = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-g"],
        ["ip", "link", "set", f"{name}-g", "netns", name],
        ["ip", "addr", "add", f"{host_side}/30", "dev", f"{name}-h"],
        ["ip", "link", "set", f"{name}-h", "up"],
        ["ip", "-n", name, "link", "set", "lo", "up"],
        ["ip", "-n", name, "addr", "add", f"{guest}/30", "dev", f"{name}-g"],
        ["ip", "-n", name, "link", "set", f"{name}-g", "up"],
    ]
    connections = workdir / f"{name}-connections"
    process = None
    try:
        for command in commands:
            run_checked(command, timeout_s=30)
        port = 8443
        process = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, *service, guest, str(port), str(connections)],
            env={**os.environ, **(env or {})},
        )
        Retrying(stop=stop_after_delay(30), wait=wait_fixed(0.2), reraise=True)(
            lambda: socket.create_connection((guest, port), timeout=1).close()
        )
        yield NetnsHost(guest, port, connections)  # the readiness probe's connection is counted by the counting service
    finally:
        if process is not None:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
