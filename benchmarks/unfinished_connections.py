"""Unfinished request heads against uvicorn as configured before and as mlgrid runs it now.

Starts a trivial ASGI app twice on loopback — plain uvicorn (httptools) and with mlgrid's
``connection_limits`` protocol — opens N connections that send half a request head and stop,
and reports how many the server closed within a window, and when. Prints figures, asserts
nothing::

    .venv/bin/python benchmarks/unfinished_connections.py [N] [WINDOW_SECONDS]
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import sys
import time
from typing import Any

HEAD = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: "


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(port: int, bounded: bool) -> None:
    import uvicorn

    from mlgrid.connection_limits import uvicorn_options

    options: dict[str, Any] = uvicorn_options(2.0, 2.0, 4096) if bounded else {"http": "httptools"}
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", loop="uvloop", **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(bounded: bool, count: int, window: float) -> tuple[int, float]:
    port = free_port()
    process = multiprocessing.Process(target=serve, args=(port, bounded), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HEAD)
        sock.setblocking(False)
        sockets.append(sock)
    opened = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    closed, last = 0, 0.0
    while closed < count and time.monotonic() < opened + window:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                closed += 1
                last = time.monotonic() - opened
    for sock in sockets:
        sock.close()
    process.terminate()
    process.join(5)
    return closed, last


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    window = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
    plain, _ = measure(False, count, window)
    bounded, last = measure(True, count, window)
    print(f"{count} connections that never finish their request head, watched for {window:g} s:")
    print(f"  uvicorn (httptools, defaults):      {plain:5d} closed by the server")
    print(f"  mlgrid (2 s head timeout):          {bounded:5d} closed by the server, "
          f"the last after {last:.2f} s")
    print(f"  freed: {bounded} vs {plain}" + ("  (uvicorn alone freed none)" if plain == 0 else ""))


if __name__ == "__main__":
    main()
