"""URL guard: schemes, address forms after resolution, allow lists, overrides."""

from __future__ import annotations

import ipaddress

import pytest

from fathom.errors import ToolError
from fathom.web.guard import UrlGuard, blocked_reason


def fake_resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


DNS = {
    "example.com": ["93.184.216.34"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "rebind.example.com": ["93.184.216.34", "10.0.0.7"],  # one public, one private answer
    "internal.corp.test": ["10.1.2.3"],
    "db.corp.test": ["10.9.9.9"],
    "lab.test": ["192.168.7.7"],
    "mapped.test": ["::ffff:127.0.0.1"],
}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.9.9.9:8080/x", "http://[::1]/", "http://0.0.0.0/", "http://[::]/",
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://169.254.1.1/", "http://224.0.0.1/", "http://239.1.2.3/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/", "http://192.0.2.1/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://[fd00:ec2::254]/", "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/", "http://[2002:7f00:1::1]/", "http://[64:ff9b::a00:1]/",
    "http://[::127.0.0.1]/", "http://100.100.100.200/", "https://127.0.0.1:443/",
])
async def test_private_literal_addresses_are_blocked(url):
    guard = UrlGuard(resolver=fake_resolver({}))
    with pytest.raises(ToolError) as e:
        await guard.check(url)
    assert e.value.code == "blocked_url", url


@pytest.mark.parametrize("url", [
    "http://localhost/", "http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://0177.0.0.1/",
    "http://localhost.:8000/",
])
async def test_numeric_and_named_loopback_forms_blocked_after_real_resolution(url):
    guard = UrlGuard()  # the real system resolver (these names resolve locally, no network)
    with pytest.raises(ToolError) as e:
        await guard.check(url)
    assert e.value.code == "blocked_url", url
    assert "loopback" in e.value.message


async def test_metadata_hostname_is_blocked_without_resolving():
    guard = UrlGuard(resolver=fake_resolver({}))
    with pytest.raises(ToolError) as e:
        await guard.check("http://metadata.google.internal/computeMetadata/v1/")
    assert e.value.code == "blocked_url"


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "http://", "example.com/page",
    "http://user:pw@example.com/", "http://exa mple.com/", "http://example.com:99999/", "gopher://example.com/",
    "", "http://example.com/\r\nHost: evil",
])
async def test_invalid_urls(url):
    guard = UrlGuard(resolver=fake_resolver(DNS))
    with pytest.raises(ToolError) as e:
        await guard.check(url)
    assert e.value.code == "invalid_url", url


async def test_public_addresses_pass_and_connect_to_the_checked_ip():
    guard = UrlGuard(resolver=fake_resolver(DNS))
    t = await guard.check("https://Example.COM/a?b=1#frag")
    assert (t.host, t.port, t.connect_host, t.connect_port, t.allowed_by) == (
        "example.com", 443, "93.184.216.34", 443, "policy")
    assert t.host_header == "example.com"
    t6 = await guard.check("http://v6.example.com:8080/")
    assert t6.connect_host.startswith("2606:") and t6.host_header == "v6.example.com:8080"
    t8 = await guard.check("http://8.8.8.8/")
    assert t8.connect_host == "8.8.8.8"


async def test_any_private_answer_blocks_the_name():
    guard = UrlGuard(resolver=fake_resolver(DNS))
    with pytest.raises(ToolError) as e:
        await guard.check("http://rebind.example.com/")
    assert e.value.code == "blocked_url" and "10.0.0.7" in e.value.message
    with pytest.raises(ToolError) as e:
        await guard.check("http://mapped.test/")
    assert e.value.code == "blocked_url"


async def test_unresolvable_host_is_fetch_failed():
    guard = UrlGuard(resolver=fake_resolver(DNS))
    with pytest.raises(ToolError) as e:
        await guard.check("http://nope.invalid/")
    assert e.value.code == "fetch_failed" and e.value.retryable


async def test_allow_list_exact_wildcard_and_cidr():
    guard = UrlGuard(["lab.test", "*.corp.test", "172.20.0.0/16"], resolver=fake_resolver(DNS))
    assert (await guard.check("http://lab.test/")).allowed_by == "allow_hosts"
    assert (await guard.check("http://internal.corp.test/")).connect_host == "10.1.2.3"
    assert (await guard.check("http://db.corp.test/")).allowed_by == "allow_hosts"
    assert (await guard.check("http://172.20.3.4/")).allowed_by == "allow_hosts"
    for url in ("http://172.21.0.1/", "http://127.0.0.1/", "http://corp.test.evil/"):
        with pytest.raises(ToolError):
            await guard.check(url)


async def test_host_override_connects_to_target_with_original_host():
    guard = UrlGuard(host_overrides={"atlas.fathom.test": "127.0.0.1:8123"}, resolver=fake_resolver({}))
    t = await guard.check("http://ATLAS.fathom.test/wiki/x")
    assert (t.connect_host, t.connect_port, t.host_header, t.allowed_by) == (
        "127.0.0.1", 8123, "atlas.fathom.test", "override")
    with pytest.raises(ToolError):  # the override does not open the loopback address itself
        await guard.check("http://127.0.0.1:8123/wiki/x")


def test_blocked_reason_names_the_range():
    assert "loopback" in blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert "metadata" in blocked_reason(ipaddress.ip_address("169.254.169.254"))
    assert "multicast" in blocked_reason(ipaddress.ip_address("ff02::1"))
    assert blocked_reason(ipaddress.ip_address("1.1.1.1")) is None
    assert blocked_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
