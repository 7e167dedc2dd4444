"""Where keyservice and the proxy may send a tenant's key (docs/security.md, "api_base and SSRF").

Both services send keys to a credential's `api_base`: keyservice when it verifies a key, the proxy on every
request. The rules, the same in both:

- Only public addresses are connected to: loopback, private (RFC 1918, ULA), link-local (169.254/16 with the
  cloud metadata services, fe80::/10), CGNAT (100.64/10), unspecified, multicast, reserved and documentation
  ranges are refused, also when written as IPv4-mapped or NAT64 IPv6 addresses. Names are resolved when the
  request is sent and the request goes to the very address that was checked (the HTTP modules' transports pin
  it, with the original name kept for TLS verification and the Host header), so a name that resolves to a
  public address at validation time and to 127.0.0.1 later (DNS rebinding) gets nowhere.
- Ops may allow non-public networks (an internal model server) by CIDR in BYOK_API_BASE_ALLOWLIST, which also
  lists hosts (`llm.corp.example`, `*.corp.example`) a credential's api_base may name besides its provider's own
  (keyservice/providers.py).
- Plain http, and loopback destinations, only with BYOK_DEV_LOOPBACK_HTTP=1 (set by `make run` and the test
  stacks, whose provider stand-in listens on 127.0.0.1), and even then http only to loopback.

This module resolves and decides; it does not import httpx (only the services' upstream modules do).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from byokcommon.settings import SettingsError, env_bool, env_str

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_ENV = "BYOK_API_BASE_ALLOWLIST"
DEV_ENV = "BYOK_DEV_LOOPBACK_HTTP"

# Names of cloud metadata services (they resolve to link-local addresses, refused anyway; named here so that
# validation refuses them without a DNS lookup).
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.com", "metadata.tencentyun.com"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")


class EgressRefused(Exception):
    """A destination the rules refuse. The message names the host (not secret) and never a key."""


class Unresolvable(Exception):
    """The host has no address (DNS failure): the destination is unreachable, not refused."""


def is_public(ip: IPAddress) -> bool:
    """Whether an address is on the public internet (IANA's global ranges, minus multicast)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _6TO4:
            return is_public(ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF))
    return ip.is_global and not ip.is_multicast


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True)
class EgressPolicy:
    """The destination rules, from BYOK_API_BASE_ALLOWLIST and BYOK_DEV_LOOPBACK_HTTP (same in both services)."""

    # Hosts an api_base may name besides its provider's own: exact names or "*.suffix".
    allowed_hosts: tuple[str, ...] = ()
    # Non-public networks that may nevertheless be connected to (an internal model server).
    allowed_networks: tuple[IPNetwork, ...] = ()
    # Development only: plain http and loopback destinations (the local provider stand-in).
    dev_loopback_http: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EgressPolicy:
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        for item in filter(None, (p.strip().lower() for p in env_str(env, ALLOWLIST_ENV).split(","))):
            if "/" in item or _literal(item) is not None:
                try:
                    networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                except ValueError:
                    raise SettingsError(f"{ALLOWLIST_ENV}: {item[:80]!r} is not a valid CIDR") from None
                continue
            name = item[2:] if item.startswith("*.") else item
            if not name or not all(part and len(part) <= 63 and part.replace("-", "").isalnum()
                                   for part in name.split(".")):
                raise SettingsError(f"{ALLOWLIST_ENV}: expected host names, *.domain or CIDRs, got {item[:80]!r}")
            hosts.append(item)
        return cls(allowed_hosts=tuple(hosts), allowed_networks=tuple(networks),
                   dev_loopback_http=env_bool(env, DEV_ENV, False))

    def host_allowlisted(self, host: str) -> bool:
        """Whether ops listed this host (exactly, or under a "*.suffix" entry)."""
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            if entry.startswith("*.") and host.endswith(entry[1:]):
                return True
            if host == entry:
                return True
        ip = _literal(host)
        return ip is not None and any(ip in net for net in self.allowed_networks)

    def address_allowed(self, ip: IPAddress) -> bool:
        if is_public(ip):
            return True
        if any(ip in net for net in self.allowed_networks):
            return True
        return self.dev_loopback_http and _is_loopback(ip)

    def check_url(self, scheme: str, host: str) -> None:
        """What can be decided without DNS: the scheme, address literals, local and metadata names.
        Raises EgressRefused; `resolve` (at send time) decides the rest."""
        host = host.lower().rstrip(".")
        ip = _literal(host)
        loopback = _is_local_name(host) or (ip is not None and _is_loopback(ip))
        if scheme == "http" and not (self.dev_loopback_http and loopback):
            raise EgressRefused("must use https (plain http only to loopback, with BYOK_DEV_LOOPBACK_HTTP=1 in "
                                "development)")
        if scheme not in ("http", "https"):
            raise EgressRefused("must be an https:// URL")
        if ip is not None:
            if not self.address_allowed(ip):
                raise EgressRefused(f"{host} is not a public address (loopback, private, link-local and metadata "
                                    f"addresses are refused unless listed in {ALLOWLIST_ENV})")
            return
        if self.host_allowlisted(host):
            return
        if _is_local_name(host) and not self.dev_loopback_http:
            raise EgressRefused(f"{host} is a loopback name (allowed only with {DEV_ENV}=1 in development)")
        if host in METADATA_HOSTS or host.endswith(".internal"):
            raise EgressRefused(f"{host} is a metadata or internal-only name (refused unless listed in "
                                f"{ALLOWLIST_ENV})")


Resolve = Callable[[str, int], Awaitable[list[str]]]
ResolveSync = Callable[[str, int], list[str]]


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def system_resolve_sync(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def choose_address(policy: EgressPolicy, host: str, addresses: list[str]) -> str:
    """The address to connect to: the first one, once every address the name has was found allowed (a name
    with any non-public address is refused whole)."""
    if not addresses:
        raise Unresolvable(host)
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if not policy.address_allowed(ip):
            raise EgressRefused(f"{host} resolves to a non-public address (loopback, private, link-local and "
                                f"metadata addresses are refused unless listed in {ALLOWLIST_ENV})")
    return addresses[0].split("%", 1)[0]


class PinningResolver:
    """Resolves a request's host to one checked address, at send time, with a short cache (of checked
    addresses only: a cached answer is one that passed, so the cache cannot be used to get past the rules)."""

    def __init__(self, policy: EgressPolicy, *, resolve: Resolve | None = None,
                 resolve_sync: ResolveSync | None = None, ttl: float = 10.0, max_entries: int = 1024) -> None:
        self.policy = policy
        self._resolve = resolve or system_resolve
        self._resolve_sync = resolve_sync or system_resolve_sync
        self._ttl = ttl
        self._max = max_entries
        self._cache: dict[tuple[str, int], tuple[float, str]] = {}

    def _literal_or_cached(self, scheme: str, host: str, port: int) -> str | None:
        self.policy.check_url(scheme, host)
        ip = _literal(host)
        if ip is not None:
            return str(ip)
        hit = self._cache.get((host, port))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def _remember(self, host: str, port: int, address: str) -> str:
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[(host, port)] = (time.monotonic() + self._ttl, address)
        return address

    async def address(self, scheme: str, host: str, port: int) -> str:
        """The checked address for host:port, or EgressRefused."""
        found = self._literal_or_cached(scheme, host, port)
        if found is not None:
            return found
        try:
            addresses = await self._resolve(host, port)
        except OSError:
            raise Unresolvable(host) from None
        return self._remember(host, port, choose_address(self.policy, host, addresses))

    def address_sync(self, scheme: str, host: str, port: int) -> str:
        found = self._literal_or_cached(scheme, host, port)
        if found is not None:
            return found
        try:
            addresses = self._resolve_sync(host, port)
        except OSError:
            raise Unresolvable(host) from None
        return self._remember(host, port, choose_address(self.policy, host, addresses))
