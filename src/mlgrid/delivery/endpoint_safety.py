"""Which endpoints the dispatcher may post to (SPEC §6.6), and endpoint URL syntax (SPEC §4).

A webhook URL is chosen by whoever creates a subscription; without rules, mlgrid would post
(and, through validation and retries, keep posting) wherever it is told, cloud metadata
services included. The rules here are applied to every *resolved address* just before a
connection is made, so a host name cannot dodge them by resolving somewhere else later:

* always refused: link-local (169.254.0.0/16, fe80::/10), cloud metadata addresses, the
  unspecified address, multicast, and reserved/broadcast ranges;
* refused only with ``--deny-private-endpoints``: loopback and private ranges (10/8,
  172.16/12, 192.168/16, 100.64/10 shared address space, fc00::/7, 127/8, ::1) — allowed by
  default so a laptop can deliver to a receiver on localhost.

IPv4 addresses embedded in IPv6 (``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
``64:ff9b::/96``) are judged as the
IPv4 address they carry, otherwise ``::ffff:169.254.169.254`` would slip through.

This module does no DNS itself: the dispatcher resolves, then asks ``check_address``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from mlgrid.errors import invalid

__all__ = [
    "ENDPOINT_URL_FIELD",
    "MAX_ENDPOINT_URL_LENGTH",
    "base_url",
    "check_address",
    "check_hostname",
    "check_url",
]

ENDPOINT_URL_FIELD = "properties.destination.properties.endpointUrl"
#: The longest URL browsers and proxies agree to carry; longer is a mistake, not a webhook.
MAX_ENDPOINT_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure WireServer
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
#: Names that reach a metadata service without looking like one.
_METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata.goog", "instance-data.ec2.internal"})

_ALWAYS_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("169.254.0.0/16", "link-local address"),
        ("fe80::/10", "link-local address"),
        ("0.0.0.0/8", "unspecified address"),
        ("::/128", "unspecified address"),
        ("224.0.0.0/4", "multicast address"),
        ("ff00::/8", "multicast address"),
        ("240.0.0.0/4", "reserved address"),  # includes 255.255.255.255 broadcast
    )
)

_PRIVATE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("127.0.0.0/8", "loopback address"),
        ("::1/128", "loopback address"),
        ("10.0.0.0/8", "private address"),
        ("172.16.0.0/12", "private address"),
        ("192.168.0.0/16", "private address"),
        ("100.64.0.0/10", "shared (carrier-grade NAT) address"),
        ("fc00::/7", "private (unique local) address"),
    )
)

_PRIVATE_HOSTNAMES = frozenset({"localhost", "localhost.localdomain"})


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _match(address: IPAddress, table: tuple[tuple[IPNetwork, str], ...]) -> str | None:
    for network, reason in table:
        if address.version == network.version and address in network:
            return reason
    return None


def check_address(ip: str, deny_private: bool) -> str | None:
    """Why a connection to ``ip`` is refused, or ``None`` when it is allowed.

    ``ip`` is a literal address (a resolver result); an IPv6 zone (``fe80::1%eth0``) is
    ignored for the decision. Something that is not an address is refused, never allowed.
    """
    text = ip.strip().strip("[]").split("%", 1)[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return f"{ip!r} is not an IP address"
    for address in dict.fromkeys((parsed, _embedded_ipv4(parsed))):
        if address in _METADATA_ADDRESSES:
            return f"{address} is a cloud metadata address"
        reason = _match(address, _ALWAYS_REFUSED)
        if reason is not None:
            return f"{address} is a {reason}"
        if deny_private:
            reason = _match(address, _PRIVATE)
            if reason is not None:
                return f"{address} is a {reason} (private endpoints are denied on this server)"
    return None


def check_hostname(host: str, deny_private: bool) -> str | None:
    """Why ``host`` is refused before resolving it, or ``None`` to go on and resolve it.

    Catches metadata host names and ``localhost`` (with ``deny_private``) by name, and IP
    literals by ``check_address``; every resolved address must still pass ``check_address``.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return check_address(name, deny_private)
    if name in _METADATA_HOSTNAMES:
        return f"{name} is a cloud metadata host"
    if deny_private and (name in _PRIVATE_HOSTNAMES or name.endswith(".localhost")):
        return f"{name} is a loopback host (private endpoints are denied on this server)"
    return None


def check_url(url: object) -> None:
    """Validate an ``endpointUrl`` syntactically; raise ``InvalidField`` naming it otherwise.

    http or https only, a host, a valid port, at most ``MAX_ENDPOINT_URL_LENGTH`` characters,
    no whitespace or control characters, and no ``user:password@``: credentials belong in a
    query string or a secret delivery attribute, where mlgrid keeps them out of reads.
    Address rules are not checked here (a name may resolve differently later); see
    ``check_address``.
    """
    if not isinstance(url, str) or not url:
        raise invalid(ENDPOINT_URL_FIELD, "must be a non-empty string")
    if len(url) > MAX_ENDPOINT_URL_LENGTH:
        raise invalid(ENDPOINT_URL_FIELD, f"must be at most {MAX_ENDPOINT_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise invalid(ENDPOINT_URL_FIELD, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(ENDPOINT_URL_FIELD, f"is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in {"http", "https"}:
        raise invalid(ENDPOINT_URL_FIELD, "must be an http or https URL")
    if not parts.hostname:
        raise invalid(ENDPOINT_URL_FIELD, "must name a host")
    if "@" in parts.netloc:
        raise invalid(ENDPOINT_URL_FIELD, "must not contain user information (user:password@)")
    if port == 0:
        raise invalid(ENDPOINT_URL_FIELD, "port 0 is not a valid port")


def base_url(url: str) -> str:
    """The URL without its query string and fragment: what reads return as ``endpointBaseUrl``.

    The query string often carries a secret (``?code=...``), so it is never shown back.
    """
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
