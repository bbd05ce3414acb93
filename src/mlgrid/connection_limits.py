"""Bounded HTTP connections: request-head and body read timeouts and a connection cap.

uvicorn (0.55, httptools) arms no timer on a new connection: its keep-alive timeout starts only
after a response, and ``limit_concurrency`` answers 503 only once a request's headers are
complete. A client that opens a connection and never finishes its headers therefore holds a
file descriptor for as long as it likes — measured: 1,500 such connections stayed open 65 s
(until the client gave up), without any credential. This protocol closes them:

* **head timeout** (``header_timeout``): from the moment a connection opens, or the first byte
  of a further request on a kept-alive connection, the request line and headers must be
  complete within that many seconds (a total, as nginx's ``client_header_timeout``);
* **body timeout** (``body_timeout``): while the application reads a body, a byte must arrive
  at least that often (an idle timeout: large uploads on slow links go on as long as they
  move; when the application itself paused reading, the client is not blamed);
* **connection cap** (``max_connections``): a connection beyond that many open ones is closed
  at once, before it costs anything but the ``accept``.

Idle kept-alive connections are closed by uvicorn's own ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def bounded_protocol(
    header_timeout: float, body_timeout: float, max_connections: int
) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` class with these limits (uvicorn's ``http=`` option)."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _reading_body = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm(header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # a further request on a kept-alive connection
                self._arm(header_timeout)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._reading_body = True
            self._arm(body_timeout)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_body = False
            self._disarm()

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self, seconds: float) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._reading_body and self.flow.read_paused:
                self._arm(seconds)  # the application is slow to read, not the client to send
                return
            self.transport.close()

    return BoundedHttpToolsProtocol


def uvicorn_options(header_timeout: float, body_timeout: float, max_connections: int) -> dict[str, Any]:
    """The ``uvicorn.run``/``uvicorn.Config`` arguments that apply these limits."""
    return {"http": bounded_protocol(header_timeout, body_timeout, max_connections)}
