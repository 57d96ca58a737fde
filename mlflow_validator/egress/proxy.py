"""The egress proxy: the model's only way out of its cage. It runs in the validator, outside the cage,
listens on a Unix socket the cage's door leads to, and allows the destinations of `sandbox.egress` and
nothing else: HTTP CONNECT for TLS, plain HTTP forwarding. Every connection, allowed or refused, is a
record (destination, calls, bytes, time).

Hand-written on asyncio, with h11 (python-hyper's HTTP/1.1 parser) reading each request head. The one
maintained Python forward proxy, proxy.py, was tried: its hooks see neither the bytes a tunnel sends up
nor the destination of a request it refused, and its acceptors run in processes of their own; tinyproxy
and Squid filter host names only and cannot listen on a Unix socket.

What it decides on, and why:
- the destination as the request names it, host and port, against the declared list: a name the model
  makes up (one resolving to a declared address, say) is refused;
- the address the proxy itself resolves that name to, and connects to: a declared name that resolves to a
  loopback, link-local (cloud metadata), unspecified or multicast address is refused, unless the
  declaration names that address (or `localhost`) itself;
- one destination per client connection: a forwarded request goes with `Connection: close`, whatever else
  the model sends on that connection goes to the same destination, and a redirect elsewhere is the model's
  own new request, judged like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import h11

from mlflow_validator.egress.destinations import BadDestination, Destination, address_of, parse_destination
from mlflow_validator.errors import InfrastructureError

MAX_HEAD_BYTES = 64 * 1024
# At once: one more is closed as soon as it is accepted, so that a model cannot use up the validator's
# file descriptors (the proxy runs in the validator's own process).
MAX_CONNECTIONS = 64
MAX_RECORDS = 1000  # connections recorded one by one; the totals count every one
HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
CHUNK = 65536
TLS_HANDSHAKE = 0x16
TLS_APPLICATION_DATA = 0x17
# An encrypted TLS 1.3 Finished message is at most 65 bytes (SHA-384), an alert 19: more application data
# than this in one burst is the model's own.
TLS_CONTROL_BYTES = 96
# The clouds' metadata services beyond link-local 169.254.169.254: AWS's IPv6 one and Alibaba Cloud's.
METADATA_ADDRESSES = frozenset({"fd00:ec2::254", "100.100.100.200"})
# Not passed on: the hop-by-hop headers (RFC 9110, 7.6.1) but Transfer-Encoding, which frames the body the
# proxy forwards as it is, and Host, which is set anew to the destination.
DROPPED_HEADERS = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"upgrade", b"host",
})  # fmt: skip

Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(entry[4][0]) for entry in found))


@dataclass
class Connection:
    """One connection the model asked for, as the report shows it."""

    destination: str  # host:port as the model named it, in the canonical form parsing gave it
    allowed: bool
    refusal: str = ""  # why not, when not allowed; why it failed, when allowed but unreachable
    calls: int = 0  # requests: each time the model spoke again after the destination answered
    bytes_up: int = 0
    bytes_down: int = 0
    opened_s: float = 0.0  # since the proxy started
    seconds: float = 0.0


@dataclass
class Tally:
    """What the proxy saw, totalled: read between two requests to know what one cost. The first MAX_RECORDS
    connections and the first MAX_RECORDS refused ones are kept one by one."""

    calls: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    opened: int = 0  # connections asked for, recorded or not
    connections: list[Connection] = field(default_factory=list)
    refused: list[Connection] = field(default_factory=list)

    @property
    def unreachable(self) -> list[Connection]:
        return [connection for connection in self.connections if connection.allowed and connection.refusal]


class Exchanges:
    """Counts calls on a connection without reading them: a call is the model sending data after the
    destination answered. Inside TLS only application data counts, and only a burst of more of it than
    TLS's own control messages, so the handshake and a closing alert are no calls. A lower bound: requests
    sent together before any answer (pipelined, or HTTP/2's streams) count once."""

    def __init__(self) -> None:
        self.calls = 0
        self.answered = True  # the first thing the model sends opens a call
        self.burst = 0  # application data the model sent since the destination last answered
        self.tls: bool | None = None
        self.header = b""  # of the TLS record being read
        self.remaining = 0  # bytes of that record's body still to come
        self.in_application_record = False

    def up(self, data: bytes) -> None:
        if self.tls is None:
            self.tls = data[:1] == bytes([TLS_HANDSHAKE])
        self.burst += self._application_bytes_in(data) if self.tls else len(data)
        if self.answered and self.burst > (TLS_CONTROL_BYTES if self.tls else 0):
            self.calls += 1
            self.answered = False

    def down(self) -> None:
        self.answered, self.burst = True, 0

    def _application_bytes_in(self, data: bytes) -> int:
        found, view = 0, memoryview(data)
        while view:
            if self.remaining:
                taken = min(self.remaining, len(view))
                found += taken if self.in_application_record else 0
                self.remaining -= taken
                view = view[taken:]
                continue
            needed = 5 - len(self.header)
            self.header += bytes(view[:needed])
            view = view[needed:]
            if len(self.header) == 5:
                self.remaining = int.from_bytes(self.header[3:5], "big")
                self.in_application_record = self.header[0] == TLS_APPLICATION_DATA
                self.header = b""
        return found


class Refused(Exception):
    """The destination is not allowed: the message says why, for the record and the model."""


class Unreachable(Exception):
    """A declared destination that cannot be reached from here: not the model's doing."""


class EgressProxy:
    def __init__(self, allowed: Sequence[Destination], resolve: Resolver = system_resolver) -> None:
        self.allowed = frozenset(allowed)
        self.resolve = resolve
        self.tally = Tally()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.active = 0  # connections being served: only the event loop's thread counts them

    def snapshot(self) -> Tally:
        with self.lock:
            return replace(self.tally, connections=list(self.tally.connections), refused=list(self.tally.refused))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled too: the proxy stopping ends its connections, and asyncio reports a handler that raises.
        failures = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
        with contextlib.closing(writer), contextlib.suppress(*failures, asyncio.CancelledError):
            if self.active >= MAX_CONNECTIONS:
                return
            self.active += 1
            try:
                await self._serve(reader, writer)
            finally:
                self.active -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        try:
            request = _parse_head(head)
        except h11.RemoteProtocolError as exc:
            return await _answer(writer, 400, f"not an HTTP request: {exc}")
        try:
            destination = _destination_of(request)
        except BadDestination as exc:
            return await _answer(writer, 400, str(exc))
        connection = self._record(destination)
        opened = time.monotonic()
        try:
            await self._connect(connection, destination, request, (reader, writer))
        finally:
            connection.seconds = time.monotonic() - opened

    async def _connect(
        self,
        connection: Connection,
        destination: Destination,
        request: h11.Request,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        try:
            address = await self._address(destination)
        except Refused as exc:
            self._refuse(connection, str(exc))
            return await _answer(client[1], 403, f"mlflow-validator refused {destination}: {exc}")
        except Unreachable as exc:
            connection.refusal = str(exc)
            return await _answer(client[1], 502, f"mlflow-validator cannot reach {destination}: {exc}")
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(address, destination.port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            connection.refusal = f"cannot connect: {exc or 'timed out'}"
            return await _answer(client[1], 502, f"mlflow-validator cannot reach {destination}: {exc or 'timed out'}")
        with contextlib.closing(upstream_writer):
            first = b""
            if request.method == b"CONNECT":
                client[1].write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                first = _forwarded_head(request, destination)
            await self._relay(connection, first, client, (upstream_reader, upstream_writer))

    def _record(self, destination: Destination) -> Connection:
        connection = Connection(str(destination), allowed=True, opened_s=time.monotonic() - self.started)
        with self.lock:
            self.tally.opened += 1
            if len(self.tally.connections) < MAX_RECORDS:
                self.tally.connections.append(connection)
        return connection

    def _refuse(self, connection: Connection, why: str) -> None:
        connection.allowed, connection.refusal = False, why
        with self.lock:
            if len(self.tally.refused) < MAX_RECORDS:
                self.tally.refused.append(connection)

    async def _address(self, destination: Destination) -> str:
        """The address to connect to, resolved here and checked: raises Refused."""
        if destination not in self.allowed:
            raise Refused("not in sandbox.egress")
        if destination.is_address:
            return destination.host
        loop = asyncio.get_running_loop()
        try:
            addresses = await asyncio.wait_for(
                loop.run_in_executor(None, self.resolve, destination.host, destination.port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"its name does not resolve: {exc or 'timed out'}") from None
        if not addresses:
            raise Unreachable("its name does not resolve")
        if destination.host != "localhost":
            for address in addresses:
                if kind := _special(address):
                    raise Refused(f"it resolves to {address}, a {kind} address; declare that address itself if meant")
        return addresses[0]

    async def _relay(
        self,
        connection: Connection,
        first: bytes,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        """Bytes both ways until the destination is done, then the model's connection closed too, so that it
        opens a new one (counted) rather than sending on a dead one. `first` is the forwarded request head, if any."""
        exchanges = Exchanges()

        async def up(data: bytes) -> None:
            if upstream[1].is_closing():
                raise ConnectionResetError("the destination closed the connection")
            exchanges.up(data)
            self._count(connection, exchanges, up=len(data))
            upstream[1].write(data)
            await upstream[1].drain()

        async def down(data: bytes) -> None:
            exchanges.down()
            self._count(connection, exchanges, down=len(data))
            client[1].write(data)
            await client[1].drain()

        if first:
            await up(first)
        sending = asyncio.create_task(_pump(client[0], upstream[1], up))  # a request's body, or TLS
        if first:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await down(_closing(await upstream[0].readuntil(b"\r\n\r\n")))
        await _pump(upstream[0], client[1], down)
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending

    def _count(self, connection: Connection, exchanges: Exchanges, up: int = 0, down: int = 0) -> None:
        with self.lock:
            new_calls = exchanges.calls - connection.calls
            connection.calls = exchanges.calls
            connection.bytes_up += up
            connection.bytes_down += down
            self.tally.calls += new_calls
            self.tally.bytes_up += up
            self.tally.bytes_down += down


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, carry: Callable[[bytes], Awaitable[None]]
) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(CHUNK):
            await carry(data)
        if sink.can_write_eof():
            sink.write_eof()


def _parse_head(head: bytes) -> h11.Request:
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    parser.receive_data(head)
    event = parser.next_event()
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError("no request line")
    return event


def _destination_of(request: h11.Request) -> Destination:
    """CONNECT's authority, or an absolute-form target's: a proxy is asked by the full URL. The destination
    parsed here is the one checked and the one connected to."""
    target = request.target.decode("ascii", "replace")
    if request.method != b"CONNECT" and not target.lower().startswith("http://"):
        raise BadDestination("ask the proxy for a full http:// URL, or CONNECT for https")
    if request.method == b"CONNECT" and "/" in target:
        raise BadDestination(f"'{target}' is not host:port")
    return parse_destination(target)


def _forwarded_head(request: h11.Request, destination: Destination) -> bytes:
    """The request as the destination takes it: origin-form, its Host the destination, no proxy headers,
    and the connection closed after the answer, so that each connection carries one destination's calls."""
    target = request.target.decode("ascii")[len("http://") :]
    path = "/" + target.split("/", 1)[1] if "/" in target else "/"
    lines = [f"{request.method.decode()} {path} HTTP/1.1", f"Host: {destination}", "Connection: close"]
    lines += [
        f"{name.decode()}: {value.decode('latin-1')}" for name, value in request.headers if name not in DROPPED_HEADERS
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _closing(head: bytes) -> bytes:
    """A forwarded answer's head saying `Connection: close`, as its connection is: the model's client then
    opens a new connection for its next request rather than sending it on this one."""
    lines = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
    kept = [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")]
    return b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""])


def _special(address: str) -> str:
    """What makes `address` one the model may not reach by a name: '' for an ordinary address."""
    parsed = address_of(address.split("%", 1)[0])
    if parsed is None:
        return "malformed"
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    if str(parsed) in METADATA_ADDRESSES:
        return "cloud metadata"
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved"):
        if getattr(parsed, f"is_{kind}"):
            return kind.replace("_", "-")
    return ""


async def _answer(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = (message + "\n").encode()
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


@contextmanager
def egress_proxy(
    allowed: Sequence[Destination], socket_path: Path, resolve: Resolver = system_resolver
) -> Iterator[EgressProxy]:
    """The proxy listening on `socket_path` (made connectable by any user: the cage's uid is not ours)
    while the block runs, on an event loop of its own thread."""
    proxy = EgressProxy(allowed, resolve)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server: asyncio.Server | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_unix_server(proxy.handle, path=str(socket_path), limit=MAX_HEAD_BYTES)
        socket_path.chmod(0o777)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="egress-proxy", daemon=True)
    thread.start()
    if not ready.wait(timeout=10):
        raise InfrastructureError(
            f"the egress proxy did not start on {socket_path}", "see mlflow-validator.log; rerun with --debug"
        )

    async def stop() -> None:
        """Connections cut, each handler's own cleanup run, then the loop stopped."""
        if server is not None:
            server.close()
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        loop.stop()

    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop)
        thread.join(timeout=5)
