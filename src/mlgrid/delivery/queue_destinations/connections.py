"""What the three queue destinations share: pooled connections, endpoint safety, socket errors.

**One connection per URL.** Opening a broker connection costs several round trips (and a
TLS handshake, and authentication), so each destination keeps one live client per distinct
connection URL, shared by every subscription and every concurrent attempt that uses it.
A connection that failed is discarded and the next attempt opens a fresh one; a connection
nobody used for ``idle_seconds`` is closed, so deleted subscriptions do not keep sockets open.

**Endpoint safety (SPEC §6.6).** Before a connection is opened, its host is checked with the
rules webhooks follow: cloud-metadata and link-local addresses are always refused, loopback
and private ones with ``--deny-private-endpoints`` (a Unix socket counts as local). The
check resolves the name itself and judges every address; the client library then resolves
again, so a name whose DNS answer changes between the two could slip through. For brokers,
which are infrastructure an operator configures rather than arbitrary receivers, this is
accepted (and recorded in docs/decisions.md).

**Errors.** ``socket_outcome`` turns the ``OSError`` family (wherever it hides in an
exception's cause chain) into the same outcome names webhooks use.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Final, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from mlgrid.delivery.endpoint_safety import check_address, check_hostname
from mlgrid.delivery.outcome import AttemptOutcome, ErrorKind, OutcomeName, classify_error

__all__ = [
    "ATTEMPT_TIMEOUT_SECONDS",
    "IDLE_SECONDS",
    "ConnectionPool",
    "EndpointRefused",
    "check_endpoint",
    "failure",
    "final",
    "scrubbed",
    "socket_outcome",
    "succeeded",
]

#: One attempt (connect included) must finish within this, as a webhook POST must (SPEC §6.2).
ATTEMPT_TIMEOUT_SECONDS: Final = 30.0
#: A pooled connection unused for this long is closed.
IDLE_SECONDS: Final = 300.0

C = TypeVar("C")


class EndpointRefused(Exception):
    """The broker's host is refused by the endpoint-safety rules (SPEC §6.6)."""


async def check_endpoint(url: str, deny_private: bool) -> None:
    """Refuse ``url`` before connecting when its host is not allowed.

    Raises ``EndpointRefused`` with the reason, or ``socket.gaierror`` when the name does not
    resolve (which the caller reports as ``ResolutionError``).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        if deny_private:
            raise EndpointRefused(
                "a Unix socket is a local endpoint (private endpoints are denied on this server)"
            )
        return
    host = parts.hostname or ""
    if not host:
        raise EndpointRefused("the URL names no host")
    reason = check_hostname(host, deny_private)
    if reason is not None:
        raise EndpointRefused(reason)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, parts.port or 0, type=socket.SOCK_STREAM)
    for info in infos:
        address = str(info[4][0])
        reason = check_address(address, deny_private)
        if reason is not None:
            raise EndpointRefused(f"{host} resolves to a refused address: {reason}")


def succeeded() -> AttemptOutcome:
    """The broker acknowledged every message of the attempt."""
    return AttemptOutcome(succeeded=True, retryable=False, name=OutcomeName.SUCCEEDED)


def failure(name: str, detail: str) -> AttemptOutcome:
    """A failure the broker reported that a later attempt may not meet (a missing stream)."""
    return AttemptOutcome(succeeded=False, retryable=True, name=name, detail=detail)


def final(name: str, detail: str) -> AttemptOutcome:
    """A failure no retry can fix (refused credentials): dead-lettered at once, like a 401."""
    return AttemptOutcome(succeeded=False, retryable=False, name=name, detail=detail)


def scrubbed(outcome: AttemptOutcome, url: str) -> AttemptOutcome:
    """``outcome`` with the URL's password (if any) masked in its detail.

    The detail is stored with the delivery and shown to Readers; client libraries do not put
    credentials in their messages today, and this keeps it so if one ever does.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return outcome
    if not password:
        return outcome
    detail = outcome.detail
    for secret in {password, unquote(password)}:
        if secret and secret in detail:
            detail = detail.replace(secret, "***")
    return outcome if detail == outcome.detail else replace(outcome, detail=detail)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def socket_outcome(exc: BaseException, timeout: float) -> AttemptOutcome | None:
    """The outcome of a network-level failure, or ``None`` when ``exc`` is not one.

    The whole cause chain is searched, because client libraries wrap the ``OSError`` they
    met (redis-py's ``ConnectionError`` keeps it as ``__context__``).
    """
    for error in _chain(exc):
        if isinstance(error, EndpointRefused):
            return classify_error(ErrorKind.UNSAFE_ENDPOINT, str(error))
        if isinstance(error, socket.gaierror):
            return classify_error(ErrorKind.DNS, f"the broker's host name does not resolve: {error}")
        if isinstance(error, ssl.SSLError | ssl.CertificateError):
            return classify_error(ErrorKind.TLS, f"TLS failed: {error}")
        if isinstance(error, TimeoutError):
            return classify_error(ErrorKind.TIMEOUT, f"the broker did not answer within {timeout:g} s")
        if isinstance(error, ConnectionRefusedError):
            return classify_error(ErrorKind.CONNECTION_REFUSED, f"connection refused: {error}")
        if isinstance(error, OSError):
            return classify_error(ErrorKind.CONNECTION_RESET, f"connection failed: {error}")
    return None


@dataclass
class _Entry(Generic[C]):
    connection: C
    leases: int = 0
    last_used: float = 0.0


class ConnectionPool(Generic[C]):
    """One open connection per URL, opened on first use and replaced after a failure.

    ``opener`` makes a connection (and runs the endpoint check), ``closer`` closes one
    without raising, ``usable`` says whether a pooled connection can still be used (a client
    that noticed its socket closed says no). Use ``lease`` around every use: a leased
    connection is never closed as idle.
    """

    def __init__(
        self,
        opener: Callable[[str], Awaitable[C]],
        closer: Callable[[C], Awaitable[None]],
        usable: Callable[[C], bool],
        *,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._usable = usable
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._entries: dict[str, _Entry[C]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._next_sweep = clock() + idle_seconds
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def lease(self, url: str) -> AsyncIterator[C]:
        """The connection for ``url`` for the duration of the block."""
        entry = await self._acquire(url)
        entry.leases += 1
        try:
            yield entry.connection
        finally:
            entry.leases -= 1
            entry.last_used = self._clock()

    async def _acquire(self, url: str) -> _Entry[C]:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        await self._sweep_idle()
        entry = self._entries.get(url)
        if entry is not None and self._usable(entry.connection):
            return entry
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._entries.get(url)
            if entry is not None:
                if self._usable(entry.connection):
                    return entry
                del self._entries[url]
                await self._closer(entry.connection)
            connection = await self._opener(url)
            entry = _Entry(connection, last_used=self._clock())
            self._entries[url] = entry
            return entry

    async def discard(self, url: str, connection: C) -> None:
        """Forget ``connection`` after it failed (if it is still the pooled one) and close it."""
        entry = self._entries.get(url)
        if entry is not None and entry.connection is connection:
            del self._entries[url]
        await self._closer(connection)

    async def _sweep_idle(self) -> None:
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._idle_seconds
        idle = [
            (url, entry)
            for url, entry in self._entries.items()
            if entry.leases == 0 and now - entry.last_used >= self._idle_seconds
        ]
        for url, _ in idle:
            del self._entries[url]
        for _, entry in idle:
            await self._closer(entry.connection)

    async def close(self) -> None:
        """Close every connection; the pool refuses new leases afterwards."""
        self._closed = True
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            with contextlib.suppress(Exception):
                await self._closer(entry.connection)
