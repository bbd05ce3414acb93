"""Bounded connections (docs/security.md): a client that never finishes its request head, or
stops sending its body, loses the connection after the timeout; connections beyond the cap are
closed at once; normal clients keep being served meanwhile."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.server import ServerProcess

UNFINISHED = 1000
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: mlgrid\r\nX-Slow: "


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("bounded")
    server = ServerProcess(data_dir=data_dir, extra_args=[
        "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)])
    try:
        yield server.start()
    finally:
        server.stop()


def _open(port: int, count: int, payload: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(payload)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def _wait_closed(
    sockets: list[socket.socket], deadline: float, want: int | None = None
) -> tuple[int, float]:
    """How many of ``sockets`` the server closed before ``deadline`` (or once ``want`` were)
    and when the last one was."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    last = time.monotonic()
    target = len(sockets) if want is None else want
    while closed < target and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if data == b"" or data.startswith(b"HTTP/1.1 4"):
                selector.unregister(sock)
                closed += 1
                last = time.monotonic()
    selector.close()
    return closed, last


def test_unfinished_requests_are_closed_within_the_timeout(bounded: ServerProcess) -> None:
    started = time.monotonic()
    sockets = _open(bounded.port, UNFINISHED, PARTIAL_HEAD)
    opened = time.monotonic()
    try:
        # A normal client is served while the unfinished connections are held.
        for _ in range(3):
            assert httpx.get(f"{bounded.url}/healthz", timeout=10).status_code == 200
        closed, last = _wait_closed(sockets, deadline=opened + HEADER_TIMEOUT + 30)
    finally:
        for sock in sockets:
            sock.close()
    print(f"\n{UNFINISHED} unfinished request heads: opened in {opened - started:.2f} s, "
          f"{closed} closed by the server, the last {last - opened:.2f} s after the last was opened "
          f"(head timeout {HEADER_TIMEOUT:g} s)")
    assert closed == UNFINISHED
    assert httpx.get(f"{bounded.url}/healthz", timeout=10).status_code == 200


def test_a_stalled_body_is_closed_after_the_body_timeout(bounded: ServerProcess) -> None:
    head = (b"POST /topics/nope/api/events HTTP/1.1\r\nHost: mlgrid\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{")
    [sock] = _open(bounded.port, 1, head)
    try:
        closed, _ = _wait_closed([sock], deadline=time.monotonic() + BODY_TIMEOUT + 30)
    finally:
        sock.close()
    assert closed == 1


def test_connections_beyond_the_cap_are_closed_at_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A long head timeout: whatever closes within the wait below is the cap, not the timeout.
    server = ServerProcess(data_dir=tmp_path_factory.mktemp("capped"),
                           extra_args=["--max-connections", "20", "--header-timeout", "120"])
    server.start()
    try:
        sockets = _open(server.port, 30, PARTIAL_HEAD)
        try:
            closed, _ = _wait_closed(sockets, deadline=time.monotonic() + 20, want=10)
            assert closed == 10
            time.sleep(1.0)
            still_open = [sock for sock in sockets if _is_open(sock)]
        finally:
            for sock in sockets:
                sock.close()
        assert len(still_open) == 20  # the first 20 wait for their head timeout
    finally:
        server.stop()


def _is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and not closed
    except OSError:
        return False
