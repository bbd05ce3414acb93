"""Connection pooling, endpoint safety and socket-error outcomes of the queue destinations."""

from __future__ import annotations

import socket
import ssl

import pytest

from mlgrid.delivery.outcome import OutcomeName
from mlgrid.delivery.queue_destinations.connections import (
    ConnectionPool,
    EndpointRefused,
    check_endpoint,
    scrubbed,
    socket_outcome,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Conn:
    """Stands in for a broker client: the pool only opens, asks and closes it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.alive = True
        self.closed = False


class Opener:
    def __init__(self) -> None:
        self.opened: list[Conn] = []

    async def open(self, url: str) -> Conn:
        conn = Conn(url)
        self.opened.append(conn)
        return conn

    @staticmethod
    async def close(conn: Conn) -> None:
        conn.closed = True


def _pool(opener: Opener, clock: FakeClock | None = None, idle: float = 300.0) -> ConnectionPool[Conn]:
    return ConnectionPool(
        opener.open, opener.close, lambda c: c.alive, idle_seconds=idle, clock=clock or FakeClock()
    )


async def test_one_connection_per_url() -> None:
    opener = Opener()
    pool = _pool(opener)
    for _ in range(3):
        async with pool.lease("redis://a") as first, pool.lease("redis://b") as second:
            assert first.url == "redis://a" and second.url == "redis://b"
    assert [c.url for c in opener.opened] == ["redis://a", "redis://b"]
    assert len(pool) == 2


async def test_unusable_connection_is_replaced() -> None:
    opener = Opener()
    pool = _pool(opener)
    async with pool.lease("u") as conn:
        conn.alive = False
    async with pool.lease("u") as again:
        assert again is not conn
    assert conn.closed
    assert len(opener.opened) == 2


async def test_discard_closes_and_forgets() -> None:
    opener = Opener()
    pool = _pool(opener)
    async with pool.lease("u") as conn:
        pass
    await pool.discard("u", conn)
    assert conn.closed
    assert len(pool) == 0
    async with pool.lease("u") as fresh:
        assert fresh is not conn


async def test_idle_connections_are_closed_but_leased_ones_stay() -> None:
    clock = FakeClock()
    opener = Opener()
    pool = _pool(opener, clock, idle=60.0)
    async with pool.lease("idle") as idle:
        pass
    async with pool.lease("busy") as busy:
        clock.now += 120.0
        async with pool.lease("other"):
            pass
        assert idle.closed
        assert not busy.closed
    assert len(pool) == 2  # busy and other


async def test_closed_pool_closes_everything_and_refuses_leases() -> None:
    opener = Opener()
    pool = _pool(opener)
    async with pool.lease("u") as conn:
        pass
    await pool.close()
    assert conn.closed
    with pytest.raises(RuntimeError):
        async with pool.lease("u"):
            pass


@pytest.mark.parametrize(
    ("url", "deny_private", "words"),
    [
        ("redis://169.254.169.254:6379", False, "metadata"),
        ("amqp://u:p@[fe80::1]:5672/", False, "link-local"),
        ("nats://metadata.google.internal:4222", False, "metadata"),
        ("redis://127.0.0.1:6379", True, "private endpoints are denied"),
        ("redis://10.1.2.3:6379", True, "private"),
        ("unix:///run/redis.sock", True, "Unix socket"),
    ],
)
async def test_refused_endpoints(url: str, deny_private: bool, words: str) -> None:
    with pytest.raises(EndpointRefused) as info:
        await check_endpoint(url, deny_private)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379", "amqp://guest:guest@10.0.0.5/", "unix:///run/redis.sock", "nats://[::1]:4222"],
)
async def test_allowed_endpoints(url: str) -> None:
    await check_endpoint(url, deny_private=False)


@pytest.mark.parametrize(
    ("error", "name", "retryable"),
    [
        (EndpointRefused("no"), OutcomeName.ENDPOINT_NOT_ALLOWED, False),
        (socket.gaierror(-2, "Name or service not known"), OutcomeName.RESOLUTION_ERROR, True),
        (ssl.SSLError("bad cert"), OutcomeName.SOCKET_ERROR, True),
        (TimeoutError(), OutcomeName.TIMED_OUT, True),
        (ConnectionRefusedError(111, "refused"), OutcomeName.SOCKET_ERROR, True),
        (ConnectionResetError(104, "reset"), OutcomeName.SOCKET_ERROR, True),
    ],
)
def test_socket_outcomes(error: BaseException, name: str, retryable: bool) -> None:
    outcome = socket_outcome(error, 30.0)
    assert outcome is not None
    assert (outcome.name, outcome.retryable, outcome.succeeded) == (name, retryable, False)


def test_socket_outcome_looks_through_wrappers() -> None:
    class LibraryError(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise LibraryError("wrapped") from inner
    except LibraryError as outer:
        outcome = socket_outcome(outer, 30.0)
    assert outcome is not None and outcome.name == OutcomeName.SOCKET_ERROR
    assert socket_outcome(ValueError("not network"), 30.0) is None


def test_password_of_the_url_never_reaches_the_detail() -> None:
    outcome = socket_outcome(ConnectionRefusedError(111, "amqp://guest:s%40cret@h refused s@cret"), 30.0)
    assert outcome is not None
    cleaned = scrubbed(outcome, "amqp://guest:s%40cret@h:5672/")
    assert "s@cret" not in cleaned.detail and "s%40cret" not in cleaned.detail
    assert "***" in cleaned.detail
    assert scrubbed(outcome, "amqp://h/") is outcome
