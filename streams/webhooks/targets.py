"""Where a webhook may be sent: http(s) URLs whose host resolves only to public addresses.

A URL is `http://` or `https://`, an ASCII host name (IDNA for others) or an
IPv4 address, optionally a port, a path and a query (`URL_PATTERN`, which the
API's OpenAPI document gives): no user or password, no fragment, no IPv6
literal (a host name may have IPv6 addresses).

The address policy is checked when an endpoint is created (the API) and again before
each request (the dispatcher), because what a name resolves to can change
between the two. A host is refused when any address it resolves to is
private, loopback, link-local, multicast, reserved, unspecified or otherwise
not global, IPv4 or IPv6; an IPv6 address that carries an IPv4 one
(IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is
judged by the IPv4 address inside. `BULKSTREAM_WEBHOOKS_ALLOW_PRIVATE` lifts
the address rule (development, tests); the URL rules stay.

A request then goes to the address that was checked (`pinned`): the URL's
host is replaced by it, `Host` and TLS's server name (SNI, and the name the
certificate is checked against) keep the URL's host. The connection cannot
land elsewhere than the check saw (no DNS rebinding between the two).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The URLs taken (see above); the host's labels as DNS allows them.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_CHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})"
URL_PATTERN = (
    rf"^https?://{_LABEL}(?:\.{_LABEL})*\.?(?::{_PORT})?(?:/{_CHAR}*)?(?:\?(?:{_CHAR}|\?)*)?$"
)
URL = re.compile(URL_PATTERN)

_NET = ipaddress.ip_network
# Not globally reachable (IANA's special-purpose registries), whatever the Python version
# says of `is_global`; each with what it is, for the refusal's message.
BLOCKED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_NET("0.0.0.0/8"), "unspecified"),
    (_NET("10.0.0.0/8"), "private"),
    (_NET("100.64.0.0/10"), "shared address space"),
    (_NET("127.0.0.0/8"), "loopback"),
    (_NET("169.254.0.0/16"), "link-local"),
    (_NET("172.16.0.0/12"), "private"),
    (_NET("192.0.0.0/24"), "reserved"),
    (_NET("192.0.2.0/24"), "reserved"),
    (_NET("192.88.99.0/24"), "reserved"),
    (_NET("192.168.0.0/16"), "private"),
    (_NET("198.18.0.0/15"), "reserved"),
    (_NET("198.51.100.0/24"), "reserved"),
    (_NET("203.0.113.0/24"), "reserved"),
    (_NET("224.0.0.0/4"), "multicast"),
    (_NET("240.0.0.0/4"), "reserved"),
    (_NET("::/128"), "unspecified"),
    (_NET("::1/128"), "loopback"),
    (_NET("::/8"), "reserved"),
    (_NET("64:ff9b:1::/48"), "private"),
    (_NET("100::/64"), "reserved"),
    (_NET("2001::/23"), "reserved"),
    (_NET("2001:db8::/32"), "reserved"),
    (_NET("fc00::/7"), "private"),
    (_NET("fe80::/10"), "link-local"),
    (_NET("fec0::/10"), "site-local"),
    (_NET("ff00::/8"), "multicast"),
)
NAT64 = _NET("64:ff9b::/96")
MAX_URL = 2000
RESOLVE_SECONDS = 5.0  # the API's wait for a new endpoint's host to resolve
RESOLVED_FOR = 30.0  # seconds a host's checked addresses are reused
RESOLVED_HOSTS = 10_000  # hosts whose addresses are kept, at most (least recently used go)


class Refused(ValueError):
    """A URL the policy refuses; the message says why."""


@dataclass(frozen=True)
class Target:
    """A webhook URL that passed the syntax rules."""

    url: httpx.URL
    host: str  # ASCII (IDNA), lower case, without an IPv6 literal's brackets
    port: int


def parse(url: str) -> Target:
    """The URL's target; Refused unless it is a URL `URL_PATTERN` takes."""
    try:
        if len(url) > MAX_URL or not URL.fullmatch(url):
            raise ValueError(url)
        # The pattern takes any dotted host; httpx refuses one of numbers only that is
        # no IPv4 address (608.0.0.0).
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise Refused(
            "url: must be an http:// or https:// URL with an ASCII host name or IPv4 address, "
            "optionally a port, a path and a query (no user, no fragment)"
        ) from None
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    return Target(parsed, host, parsed.port or (443 if parsed.scheme == "https" else 80))


def refusal(address: IPAddress) -> str | None:
    """Why a connection to this address is refused (None: it is a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = refusal(inner)
            return f"{reason} (inside {address})" if reason else None
    for network, kind in BLOCKED:
        if address.version == network.version and address in network:
            return f"{address} is {kind} ({network})"
    if not address.is_global or address.is_multicast:
        return f"{address} is not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target, allow_private: bool) -> list[IPAddress]:
    """The addresses the target's host resolves to, in the resolver's order of
    preference; Refused if it resolves to none, or (unless `allow_private`) to any
    address that is not public. The caller bounds the time (DNS can hang)."""
    literal = _literal(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Refused(f"url: {target.host} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(_address(info) for info in infos))
    if not addresses:
        raise Refused(f"url: {target.host} resolves to no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise Refused(f"url: {target.host} resolves to a private address: {reason}")
    return addresses


def _address(info: tuple[Any, ...]) -> IPAddress:
    # IPv6's sockaddr may carry a zone (`fe80::1%eth0`): the address is what comes before.
    return ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])


async def check(url: str, allow_private: bool) -> Target:
    """The API's check of a new endpoint: the URL rules, then (unless `allow_private`,
    which takes any host, resolvable or not) the addresses its host resolves to now."""
    target = parse(url)
    if not allow_private:
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                await resolve(target, allow_private)
        except TimeoutError:
            raise Refused(f"url: {target.host} did not resolve in {RESOLVE_SECONDS:g} s") from None
    return target


def pinned(target: Target, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, headers and request extensions of a request to `target` that connects
    to `address`, with the URL's host as `Host` and as TLS's server name."""
    url = target.url.copy_with(host=str(address))
    default = 443 if target.url.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default:
        host_header = f"{host_header}:{target.port}"
    extensions: dict[str, Any] = {}
    if target.url.scheme == "https" and _literal(target.host) is None:
        extensions["sni_hostname"] = target.host
    return url, {"Host": host_header}, extensions


class Resolver:
    """Checked addresses per host, kept `RESOLVED_FOR` seconds (a busy endpoint is not
    one DNS query a request), for `RESOLVED_HOSTS` hosts at most."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._known: OrderedDict[tuple[str, int], tuple[float, IPAddress]] = OrderedDict()

    async def address(self, target: Target) -> IPAddress:
        """The address to connect to; Refused as `resolve` says."""
        key = (target.host, target.port)
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[0] > now:
            self._known.move_to_end(key)
            return known[1]
        address = (await resolve(target, self.allow_private))[0]
        self._known[key] = (now + RESOLVED_FOR, address)
        self._known.move_to_end(key)
        while len(self._known) > RESOLVED_HOSTS:
            self._known.popitem(last=False)
        return address
