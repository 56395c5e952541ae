"""The URL policy (pure, and with the local resolver): http(s) only, public addresses only
unless allowed, IPv4 and IPv6 (IPv4 inside IPv6 included)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from streams.webhooks import targets


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://hooks.example.com:8443/a/b?tenant=1&x=%20",
        "http://93.184.216.34/hook",
        "https://a-b.c0.example./x",
    ],
)
def test_urls_taken(url: str) -> None:
    targets.parse(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "example.com/hook",
        "http://user:pw@example.com/",
        "http://example.com/#frag",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://[::1]/",
        "http://exa mple.com/",
        "http://bücher.example/",
        "http://-bad.example/",
        "http://example.com/\n",
        "http://" + "a" * 2000 + ".com/",
        "http://608.0.0.0/",  # a dotted-number host that is no IPv4 address
    ],
)
def test_urls_refused(url: str) -> None:
    with pytest.raises(targets.Refused):
        targets.parse(url)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::127.0.0.1",  # IPv4-compatible (deprecated)
    ],
)
def test_addresses_refused(address: str) -> None:
    assert targets.refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_taken(address: str) -> None:
    assert targets.refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/hook",  # resolves to 127.0.0.1 (and ::1)
        "http://127.0.0.1/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://0x7f000001/",
        "http://10.0.0.1/",
    ],
)
def test_hosts_resolving_to_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(targets.Refused, match="private"):
        asyncio.run(targets.check(url, allow_private=False))
    asyncio.run(targets.check(url, allow_private=True))


def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(targets.Refused):
        asyncio.run(targets.check("http://no-such-host.invalid/", allow_private=False))


def test_a_request_is_pinned_to_the_checked_address() -> None:
    target = targets.parse("https://hooks.example.com:8443/in?x=1")
    url, headers, extensions = targets.pinned(target, ipaddress.ip_address("93.184.216.34"))
    assert str(url) == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    url, headers, _ = targets.pinned(
        targets.parse("http://hooks.example.com/in"), ipaddress.ip_address("2606:4700::1111")
    )
    assert str(url) == "http://[2606:4700::1111]/in"
    assert headers == {"Host": "hooks.example.com"}


def test_the_resolver_refuses_as_the_policy_says() -> None:
    async def both() -> None:
        target = targets.parse("http://localhost:9/")
        with pytest.raises(targets.Refused):
            await targets.Resolver(allow_private=False).address(target)
        assert (await targets.Resolver(allow_private=True).address(target)).is_loopback

    asyncio.run(both())
