"""Endpoint safety rules (SPEC §6.6) and endpointUrl syntax (SPEC §4)."""

from __future__ import annotations

import pytest

from mlgrid.delivery.endpoint_safety import (
    MAX_ENDPOINT_URL_LENGTH,
    base_url,
    check_address,
    check_hostname,
    check_url,
)
from mlgrid.errors import InvalidField

FIELD = "properties.destination.properties.endpointUrl"

ALWAYS_REFUSED = [
    "169.254.169.254",  # metadata (AWS, GCP, Azure IMDS)
    "169.254.0.1",
    "169.254.255.255",
    "168.63.129.16",  # Azure WireServer
    "100.100.100.200",  # Alibaba metadata
    "fd00:ec2::254",  # AWS IMDS IPv6
    "fe80::1",
    "fe80::1%eth0",
    "febf:ffff::1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "255.255.255.255",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "2002:a9fe:a9fe::1",  # 6to4 carrying 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 carrying 169.254.169.254
    "[fe80::1]",
]

PRIVATE = [
    "127.0.0.1",
    "127.255.0.9",
    "::1",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.10",
    "100.64.0.1",
    "100.127.255.254",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
]

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",
    "172.15.255.255",
    "100.128.0.1",
    "2606:4700::1111",
    "192.169.0.1",
    "1.1.1.1",
]


@pytest.mark.parametrize("ip", ALWAYS_REFUSED)
@pytest.mark.parametrize("deny_private", [False, True])
def test_always_refused(ip: str, deny_private: bool) -> None:
    reason = check_address(ip, deny_private)
    assert reason is not None
    assert reason


def test_metadata_reason_says_metadata() -> None:
    assert "metadata" in (check_address("169.254.169.254", False) or "")
    assert "metadata" in (check_address("168.63.129.16", False) or "")
    assert "link-local" in (check_address("169.254.1.1", False) or "")


@pytest.mark.parametrize("ip", PRIVATE)
def test_private_allowed_by_default(ip: str) -> None:
    assert check_address(ip, deny_private=False) is None


@pytest.mark.parametrize("ip", PRIVATE)
def test_private_refused_when_denied(ip: str) -> None:
    reason = check_address(ip, deny_private=True)
    assert reason is not None
    assert "private endpoints are denied" in reason


@pytest.mark.parametrize("ip", PUBLIC)
@pytest.mark.parametrize("deny_private", [False, True])
def test_public_allowed(ip: str, deny_private: bool) -> None:
    assert check_address(ip, deny_private) is None


@pytest.mark.parametrize("ip", ["", "example.org", "999.1.1.1", "1.2.3"])
def test_not_an_address_is_refused(ip: str) -> None:
    assert check_address(ip, False) is not None


@pytest.mark.parametrize(
    ("host", "deny_private", "refused"),
    [
        ("metadata.google.internal", False, True),
        ("METADATA.GOOGLE.INTERNAL.", False, True),
        ("169.254.169.254", False, True),
        ("[fe80::1]", False, True),
        ("localhost", False, False),
        ("localhost", True, True),
        ("app.localhost", True, True),
        ("127.0.0.1", True, True),
        ("127.0.0.1", False, False),
        ("example.org", True, False),
    ],
)
def test_check_hostname(host: str, deny_private: bool, refused: bool) -> None:
    assert (check_hostname(host, deny_private) is not None) is refused


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/hook?code=secret",
        "http://127.0.0.1:8080/events",
        "HTTPS://EXAMPLE.ORG",
        "http://[::1]:9000/x",
        "https://example.org:8443/a/b;c?d=e#f",
    ],
)
def test_valid_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        None,
        42,
        "",
        "ftp://example.org/x",
        "example.org/hook",
        "//example.org/hook",
        "https:///path-only",
        "https://exa mple.org/",
        "https://example.org/\nX-Injected: 1",
        "https://example.org:99999/",
        "https://example.org:0/",
        "https://user:pass@example.org/",
        "https://[::1/",
        "javascript:alert(1)",
        "https://example.org/" + "a" * MAX_ENDPOINT_URL_LENGTH,
    ],
)
def test_invalid_urls_name_the_field(url: object) -> None:
    with pytest.raises(InvalidField) as caught:
        check_url(url)
    assert caught.value.field_name == FIELD
    assert caught.value.message.startswith(FIELD)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/hook?code=secret", "https://example.org/hook"),
        ("https://example.org/hook", "https://example.org/hook"),
        ("http://127.0.0.1:8080/a/b?x=1&y=2#frag", "http://127.0.0.1:8080/a/b"),
        ("https://example.org?code=1", "https://example.org"),
    ],
)
def test_base_url_drops_the_query_string(url: str, expected: str) -> None:
    assert base_url(url) == expected
