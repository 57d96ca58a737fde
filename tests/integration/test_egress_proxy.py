"""The egress proxy and its door, for real: HTTP clients in a child process (requests, and plain sockets
where a client would not misbehave as an attacker does), the door between them and the proxy, and
servers on this machine's loopback declared by address. Names are resolved by a resolver the tests
give, so that a name can point anywhere. (The stub LLM and the caged GenAI models: test_genai.py.)"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlflow_validator.egress.destinations import Destination
from mlflow_validator.egress.proxy import MAX_CONNECTIONS, egress_proxy
from mlflow_validator.egress.tunnel import DOOR

pytestmark = pytest.mark.integration


class Answering(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    redirect_to = ""

    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))  # the connection is kept for the next request
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"path": self.path, "host": self.headers["Host"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    serving = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=serving.serve_forever, daemon=True).start()
    yield serving
    serving.shutdown()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    serving = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    serving.socket = context.wrap_socket(serving.socket, server_side=True)
    threading.Thread(target=serving.serve_forever, daemon=True).start()
    yield serving, certificate
    serving.shutdown()


def declared(serving: ThreadingHTTPServer) -> Destination:
    return Destination("127.0.0.1", serving.server_address[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def behind_door(proxy_socket: Path, client: str) -> list[str]:
    """`client` (Python) run behind the door, as the model runs in its cage; its printed lines."""
    port = free_port()
    proxy = f"http://127.0.0.1:{port}"
    env = {"PATH": "/usr/bin:/bin", "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}
    done = subprocess.run(
        [sys.executable, "-I", DOOR, "unix", proxy_socket, str(port), "--", sys.executable, "-c", client],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def raw_exchange(proxy_socket: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(proxy_socket))
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_a_declared_destination_is_reached_and_everything_else_is_refused_by_name(server, tmp_path):
    proxy_socket = tmp_path / "proxy.sock"
    port = server.server_address[1]
    client = f"""
import requests
print(requests.get('http://127.0.0.1:{port}/allowed').json()['path'])
print(requests.get('http://example.com/').status_code)
try:
    requests.get('https://example.com/')
except requests.exceptions.ProxyError as exc:
    print('refused' if '403' in str(exc) else exc)
"""
    with egress_proxy([declared(server)], proxy_socket) as proxy:
        assert behind_door(proxy_socket, client) == ["/allowed", "403", "refused"]
        seen = proxy.snapshot()
    assert [(c.destination, c.allowed) for c in seen.connections] == [
        (f"127.0.0.1:{port}", True),
        ("example.com:80", False),
        ("example.com:443", False),
    ]
    assert seen.connections[0].calls == 1 and seen.connections[0].bytes_up > 0 and seen.connections[0].bytes_down > 0
    assert {c.refusal for c in seen.refused} == {"not in sandbox.egress"}


def test_each_forwarded_request_is_a_call_and_a_kept_alive_client_opens_a_connection_for_each(server, tmp_path):
    """Forwarded requests are told `Connection: close`: the next one comes on a new connection, judged anew."""
    proxy_socket = tmp_path / "proxy.sock"
    client = f"""
import requests
with requests.Session() as session:
    for index in range(3):
        print(session.post('http://127.0.0.1:{server.server_address[1]}/v1/chat', json={{'n': index}}).status_code)
"""
    with egress_proxy([declared(server)], proxy_socket) as proxy:
        assert behind_door(proxy_socket, client) == ["200"] * 3
        seen = proxy.snapshot()
    assert seen.calls == len(seen.connections) == 3


def test_a_redirect_elsewhere_is_a_new_request_and_refused(server, tmp_path):
    other = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    Answering.redirect_to = f"http://127.0.0.1:{other.server_address[1]}/stolen"
    proxy_socket = tmp_path / "proxy.sock"
    client = f"print(requests.get('http://127.0.0.1:{server.server_address[1]}/redirect').status_code)"
    try:
        with egress_proxy([declared(server)], proxy_socket) as proxy:
            assert behind_door(proxy_socket, f"import requests\n{client}") == ["403"]
            seen = proxy.snapshot()
    finally:
        other.shutdown()
    assert [c.destination for c in seen.refused] == [f"127.0.0.1:{other.server_address[1]}"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),  # the clouds' metadata service: a runner's credentials
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_a_declared_name_that_resolves_to_a_special_address_is_refused(server, tmp_path, address, kind):
    proxy_socket = tmp_path / "proxy.sock"
    port = server.server_address[1]
    with egress_proxy([Destination("llm.example", port)], proxy_socket, resolve=lambda host, _: [address]) as proxy:
        answer = raw_exchange(proxy_socket, f"GET http://llm.example:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        seen = proxy.snapshot()
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert seen.refused[0].refusal.startswith(f"it resolves to {address}, a {kind} address")


def test_a_name_nobody_declared_is_refused_even_when_it_resolves_to_a_declared_address(server, tmp_path):
    proxy_socket = tmp_path / "proxy.sock"
    port = server.server_address[1]
    resolve = {"llm.example": ["10.9.9.9"], "sneaky.example": ["127.0.0.1"]}
    allowed = [Destination("llm.example", port), declared(server)]
    with egress_proxy(allowed, proxy_socket, resolve=lambda host, _: resolve[host]) as proxy:
        head = f"CONNECT sneaky.example:{port} HTTP/1.1\r\nHost: sneaky.example:{port}\r\n\r\n"
        answer = raw_exchange(proxy_socket, head.encode())
        seen = proxy.snapshot()
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert [(c.destination, c.refusal) for c in seen.connections] == [
        (f"sneaky.example:{port}", "not in sandbox.egress")
    ]


def test_localhost_and_loopback_addresses_are_reached_only_when_declared_as_such(server, tmp_path):
    proxy_socket = tmp_path / "proxy.sock"
    port = server.server_address[1]
    with egress_proxy([Destination("localhost", port)], proxy_socket) as proxy:
        answer = raw_exchange(proxy_socket, f"GET http://localhost:{port}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        refused = raw_exchange(proxy_socket, f"GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        seen = proxy.snapshot()
    assert answer.startswith(b"HTTP/1.1 200 ") and f'"host": "localhost:{port}"'.encode() in answer
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert [c.allowed for c in seen.connections] == [True, False]


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /origin-form HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # a client that forgot it talks to a proxy
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",  # asking the proxy to speak TLS for it
        b"GET http://user:key@127.0.0.1:1/ HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",  # no port
        b"CONNECT 127.0.0.1:1/x HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1:1/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n",  # an obsolete folded header: h11 refuses it
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
)
def test_what_is_not_a_proxy_request_is_refused_and_reaches_nothing(server, tmp_path, request_head):
    proxy_socket = tmp_path / "proxy.sock"
    with egress_proxy([Destination("127.0.0.1", 1)], proxy_socket) as proxy:
        answer = raw_exchange(proxy_socket, request_head)
        seen = proxy.snapshot()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert seen.connections == [] and seen.calls == 0


def test_a_forwarded_request_goes_to_the_destination_it_names_whatever_its_host_header_says(server, tmp_path):
    proxy_socket = tmp_path / "proxy.sock"
    port = server.server_address[1]
    head = f"GET http://127.0.0.1:{port}/p HTTP/1.1\r\nHost: elsewhere.example\r\nProxy-Authorization: x\r\n\r\n"
    with egress_proxy([declared(server)], proxy_socket):
        answer = raw_exchange(proxy_socket, head.encode())
    assert f'"host": "127.0.0.1:{port}"'.encode() in answer


def test_calls_inside_a_kept_alive_tls_tunnel_are_counted_one_by_one(tls_server, tmp_path):
    """An SDK keeps its connection to the LLM: a loop of calls is one tunnel, and must count as many calls."""
    serving, certificate = tls_server
    proxy_socket = tmp_path / "proxy.sock"
    client = f"""
import requests
with requests.Session() as session:
    for index in range(5):
        url = 'https://127.0.0.1:{serving.server_address[1]}/v1/chat'
        session.post(url, json={{'n': index}}, verify='{certificate}')
print('done')
"""
    with egress_proxy([declared(serving)], proxy_socket) as proxy:
        assert behind_door(proxy_socket, client) == ["done"]
        seen = proxy.snapshot()
    assert len(seen.connections) == 1
    assert seen.calls == seen.connections[0].calls == 5


def test_a_proxy_that_stops_leaves_no_connection_open(server, tmp_path):
    proxy_socket = tmp_path / "proxy.sock"
    with egress_proxy([declared(server)], proxy_socket):
        held = socket.socket(socket.AF_UNIX)
        held.connect(str(proxy_socket))
        held.sendall(f"CONNECT 127.0.0.1:{server.server_address[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert held.recv(100).startswith(b"HTTP/1.1 200 ")
    held.settimeout(5)
    assert held.recv(100) == b""  # cut when the proxy stopped
    held.close()


def test_a_model_holding_connections_open_uses_up_no_more_than_the_proxys_bound(server, tmp_path):
    """The proxy runs in the validator: idle connections beyond MAX_CONNECTIONS are closed as they come, a
    silent one is dropped after HEAD_TIMEOUT_S, and a real request still goes through."""
    proxy_socket = tmp_path / "proxy.sock"
    held = []
    with egress_proxy([declared(server)], proxy_socket) as proxy:
        descriptors = len(os.listdir("/proc/self/fd"))
        for _ in range(3 * MAX_CONNECTIONS):
            connection = socket.socket(socket.AF_UNIX)
            connection.connect(str(proxy_socket))
            held.append(connection)
        time.sleep(1)
        # ours (the held ends) and the proxy's (at most MAX_CONNECTIONS accepted ones)
        assert len(os.listdir("/proc/self/fd")) - descriptors <= len(held) + MAX_CONNECTIONS + 5
        for connection in held:
            connection.close()
        time.sleep(0.5)
        head = f"GET http://127.0.0.1:{server.server_address[1]}/after HTTP/1.1\r\nHost: x\r\n\r\n"
        assert raw_exchange(proxy_socket, head.encode()).startswith(b"HTTP/1.1 200 ")
        assert proxy.snapshot().opened == 1
