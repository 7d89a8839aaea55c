"""URL guard against server-side request forgery.

Every URL the tool server fetches (the first one and every redirect hop) goes through `UrlGuard.check`:

1. only ``http``/``https`` with a host, no credentials in the URL;
2. the host is resolved (``loop.getaddrinfo``, i.e. off the event loop) and **every** address it resolves to is
   checked: private, loopback, link-local, multicast, reserved, unspecified, shared (CGNAT), documentation and
   cloud-metadata addresses are refused, for IPv4 and IPv6 including IPv4-mapped / 6to4 / Teredo / NAT64 forms;
3. the caller then connects to the *checked* address (`Target.connect_host`), never re-resolving the name, so a DNS
   answer that changes between check and connect (rebinding) cannot reach an internal address.

Hosts in ``allow_hosts`` (exact, ``*.suffix`` or a CIDR block) skip step 2's address policy; hosts in
``host_overrides`` connect to the configured ``ip:port`` with the original Host header (like curl --resolve).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import SplitResult, urlsplit

from fathom.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata endpoints that are not already covered by the private/link-local ranges.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack (link-local anyway)
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (shared address space)
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6 metadata
}
METADATA_HOSTNAMES = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def blocked_reason(ip: IPAddress) -> str | None:
    """Why connecting to `ip` is refused, or None if it is a public unicast address."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: IPAddress | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} (embedded in {ip})" if inner else None
        if ip.scope_id:
            return "scoped IPv6 address"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", getattr(ip, "is_site_local", False)),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address"
    if not ip.is_global:
        return "non-global address (shared/documentation/benchmark range)"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL and where to connect for it."""

    url: str
    scheme: str
    host: str  # the name in the URL (for the Host header and TLS SNI)
    port: int
    connect_host: str  # the checked IP (or the override's address) to connect to
    connect_port: int
    allowed_by: str  # "policy" | "allow_hosts" | "override"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> SplitResult:
    """Syntactic checks; raises ToolError(invalid_url)."""
    if not isinstance(url, str) or not url.strip():
        raise ToolError("invalid_url", "empty URL")
    url = url.strip()
    if any(c in url for c in "\r\n\t\x00 "):
        raise ToolError("invalid_url", f"URL contains whitespace or control characters: {url[:200]!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ToolError("invalid_url", f"malformed URL {url[:200]!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ToolError("invalid_url", f"only http:// and https:// URLs can be fetched, not {url[:200]!r}")
    if not parts.hostname:
        raise ToolError("invalid_url", f"URL has no host: {url[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise ToolError("invalid_url", "URLs with credentials (user:password@) are refused")
    return parts


@functools.lru_cache(maxsize=1024)
def _scheme_host_port(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL that passes :func:`split_url` (memoised: pure, and on every tool call's path;
    a URL that raises is not remembered)."""
    parts = split_url(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower().rstrip("."), parts.port or (443 if scheme == "https" else 80)


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class UrlGuard:
    def __init__(self, allow_hosts: list[str] | None = None, host_overrides: dict[str, str] | None = None,
                 resolver: Resolver | None = None, dns_timeout_s: float = 5.0):
        self.allow_names: set[str] = set()
        self.allow_suffixes: list[str] = []
        self.allow_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow_hosts or []:
            entry = entry.strip().lower().rstrip(".")
            if entry.startswith("*."):
                self.allow_suffixes.append(entry[1:])
                continue
            try:
                self.allow_nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.allow_names.add(entry)
        self.overrides: dict[str, tuple[str, int]] = {}
        for host, target in (host_overrides or {}).items():
            addr, _, port = target.rpartition(":")
            self.overrides[host.lower().rstrip(".")] = (addr.strip("[]"), int(port))
        self.resolver = resolver or system_resolver
        self.dns_timeout_s = dns_timeout_s

    def host_allowed(self, host: str) -> bool:
        return host in self.allow_names or any(host.endswith(s) for s in self.allow_suffixes)

    async def check(self, url: str) -> Target:
        """Validate `url`; raise ToolError(invalid_url|blocked_url|fetch_failed) or return where to connect."""
        scheme, host, port = _scheme_host_port(url)
        if host in self.overrides:
            addr, oport = self.overrides[host]
            return Target(url, scheme, host, port, addr, oport, "override")
        if host in METADATA_HOSTNAMES and not self.host_allowed(host):
            raise ToolError("blocked_url", f"{host} is a cloud metadata host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                async with asyncio.timeout(self.dns_timeout_s):
                    addresses = await self.resolver(host, port)
            except TimeoutError:
                raise ToolError("timeout", f"DNS lookup of {host} timed out", retryable=True) from None
            except (OSError, UnicodeError) as exc:
                raise ToolError("fetch_failed", f"cannot resolve {host}: {exc}", retryable=True) from None
            if not addresses:
                raise ToolError("fetch_failed", f"{host} resolves to no address", retryable=True)
        by_name = self.host_allowed(host)
        chosen, via = None, "policy"
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if by_name or any(ip in net for net in self.allow_nets):
                chosen, via = chosen or a, "allow_hosts"
                continue
            reason = blocked_reason(ip)
            if reason:  # any bad address blocks the host: the name must not be usable to reach it
                raise ToolError("blocked_url", f"{host} resolves to {a}, a {reason}; refused")
            chosen = chosen or a
        assert chosen is not None
        return Target(url, scheme, host, port, chosen, port, via)
