"""`sandbox.egress` entries, parsed once into the destinations the proxy allows.

An entry is `host:port` or a URL (`https://llm.internal/v1`: its scheme gives the port), and may name job
variables as `${NAME}`, expanded from the job's environment when the options are resolved.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEME_PORTS = {"http": 80, "https": 443}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


class BadDestination(ValueError):
    """An entry that names no host and port."""


@dataclass(frozen=True, order=True)
class Destination:
    host: str  # lower case, without a trailing dot; an IP address in its canonical form
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_address(self) -> bool:
        return address_of(self.host) is not None


def address_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def canonical_host(host: str) -> str:
    """The host as the proxy compares it: `LLM.example.` and `llm.example` are one host, and so are
    `::1` and `0:0::1`. Raises BadDestination for anything that is not a host name or an address."""
    host = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if "%" in host:
        raise BadDestination(f"'{host}' names a network interface (an IPv6 zone): no destination does")
    if (address := address_of(host)) is not None:
        return str(address)
    if not _HOST_NAME.fullmatch(host):
        raise BadDestination(f"'{host}' is not a host name")
    return host


def parse_destination(entry: str) -> Destination:
    """`host:port`, `[v6]:port` or a URL, as the proxy compares them."""
    text = entry.strip()
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
        hostname = parts.hostname
    except ValueError as exc:  # an unclosed [ of an IPv6 address
        raise BadDestination(f"'{entry}': {exc}") from None
    if parts.scheme and parts.scheme not in SCHEME_PORTS:
        raise BadDestination(f"'{entry}': only http:// and https:// URLs name a port")
    if parts.username or parts.password:
        raise BadDestination(f"'{entry}' holds credentials: give the key with `env: {{pass: [NAME]}}` instead")
    try:
        port = parts.port or SCHEME_PORTS.get(parts.scheme)
    except ValueError as exc:
        raise BadDestination(f"'{entry}': {exc}") from None
    if not hostname or port is None:
        raise BadDestination(f"'{entry}' names no host and port (like llm.example.com:443 or https://llm.example.com)")
    return Destination(canonical_host(hostname), port)


def expand(entry: str, env: Mapping[str, str]) -> str:
    """`${NAME}` replaced by the job's value; a name the job does not set raises KeyError."""
    return _VARIABLE.sub(lambda match: env[match[1]], entry)


def variables_in(entry: str) -> list[str]:
    return _VARIABLE.findall(entry)
