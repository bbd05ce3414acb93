"""A real webhook receiver on 127.0.0.1 for integration tests.

It runs a threaded ``http.server`` on a free loopback port, records every request (method,
path, query, headers, body) and answers the way a test tells it to. One receiver can stand
for many endpoints: behaviour is configured per path, with a default for the rest.

Typical use::

    with Receiver() as receiver:
        url = receiver.endpoint("/hook", code="secret")    # http://127.0.0.1:PORT/hook?code=secret
        ...create a subscription with url...
        receiver.enqueue("/hook", Reply(500), Reply(503))  # next two notifications fail
        events = receiver.wait_for_events(3, path="/hook")

What it answers, in order of precedence, for a request on ``path``:

1. ``receiver.handler(request)`` if set and it returns a ``Reply``;
2. a ``SubscriptionValidation`` POST (header ``aeg-event-type``): the path's ``validation``
   behaviour — ``"echo"`` (200 ``{"validationResponse": <code>}``, the default), ``"manual"``
   (200 with an empty body: the subscription waits for a GET on its ``validationUrl``),
   ``"wrong"`` (200 with a wrong code), or any ``Reply``;
3. an ``OPTIONS`` request (CloudEvents abuse protection): the path's ``options`` behaviour —
   ``"echo"`` (200 with ``WebHook-Allowed-Origin`` = the request's ``WebHook-Request-Origin``
   and ``WebHook-Allowed-Rate: *``, the default), ``"*"`` (allowed origin ``*``), ``"refuse"``
   (200 without the header), or any ``Reply``;
4. the next reply queued with ``enqueue(path, ...)``;
5. the path's ``default`` reply (200 with an empty body unless configured).

A ``Reply`` may carry a ``delay`` to simulate a slow endpoint (the receiving thread sleeps;
the server keeps answering other requests). Waiting helpers poll with a bounded timeout and
fail with a summary of what did arrive.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. ``body`` may be bytes, text, or JSON (dict/list, sent as JSON)."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        return self.body, headers


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the receiver saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def event_type(self) -> str | None:
        """The ``aeg-event-type`` header: ``Notification`` or ``SubscriptionValidation``."""
        return self.header("aeg-event-type")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def events(self) -> list[Any]:
        """The events of the body: the array's items, or the single object (CloudEvents)."""
        body = self.json()
        if body is None:
            return []
        return list(body) if isinstance(body, list) else [body]


Behaviour = str | Reply


class _Server(ThreadingHTTPServer):
    # The default listen backlog (5) drops connections when a dispatcher opens dozens at
    # once (64 per endpoint and node); dropped handshakes then hang until the 30 s timeout.
    request_queue_size = 512


@dataclass
class PathConfig:
    validation: Behaviour = "echo"
    options: Behaviour = "echo"
    default: Reply = field(default_factory=Reply)
    queued: deque[Reply] = field(default_factory=deque)


class Receiver:
    """A webhook endpoint on loopback that records requests and answers as configured."""

    def __init__(
        self, *, validation: Behaviour = "echo", options: Behaviour = "echo", default: Reply | None = None
    ) -> None:
        self._defaults = PathConfig(validation=validation, options=options, default=default or Reply())
        self._paths: dict[str, PathConfig] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.handler: Callable[[RecordedRequest], Reply | None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Receiver:
        receiver = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                receiver._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle

        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "receiver is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, path: str = "/hook", **query: str) -> str:
        """The URL of ``path`` on this receiver, with an optional query string."""
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{self.url}{path}{suffix}"

    # --- behaviour --------------------------------------------------------------------------

    def configure(
        self,
        path: str,
        *,
        validation: Behaviour | None = None,
        options: Behaviour | None = None,
        default: Reply | None = None,
    ) -> None:
        """Set how ``path`` answers; unset aspects keep the receiver-wide defaults."""
        with self._lock:
            config = self._config(path)
            if validation is not None:
                config.validation = validation
            if options is not None:
                config.options = options
            if default is not None:
                config.default = default

    def enqueue(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` (other than handshakes) with ``replies``, in order."""
        with self._lock:
            self._config(path).queued.extend(replies)

    def _config(self, path: str) -> PathConfig:
        config = self._paths.get(path)
        if config is None:
            d = self._defaults
            config = self._paths[path] = PathConfig(d.validation, d.options, d.default)
        return config

    # --- recorded requests -----------------------------------------------------------------

    def requests(
        self, path: str | None = None, *, method: str | None = None, event_type: str | None = None
    ) -> list[RecordedRequest]:
        with self._lock:
            found = list(self._requests)
        return [
            r
            for r in found
            if (path is None or r.path == path)
            and (method is None or r.method == method.upper())
            and (event_type is None or r.event_type == event_type)
        ]

    def validations(self, path: str | None = None) -> list[RecordedRequest]:
        return self.requests(path, method="POST", event_type="SubscriptionValidation")

    def notifications(self, path: str | None = None) -> list[RecordedRequest]:
        return self.requests(path, method="POST", event_type="Notification")

    def events(self, path: str | None = None) -> list[Any]:
        """Every event delivered in notifications to ``path`` (batches flattened), in order."""
        return [event for r in self.notifications(path) for event in r.events()]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(
        self,
        predicate: Callable[[list[RecordedRequest]], bool],
        *,
        path: str | None = None,
        timeout: float = 10.0,
    ) -> list[RecordedRequest]:
        """Poll until ``predicate(requests to path)`` holds; fail with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(path)
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                summary = [(r.method, r.path, r.event_type) for r in found]
                raise AssertionError(f"receiver condition not met within {timeout} s; got {summary}")
            time.sleep(0.02)

    def wait_for_events(self, count: int, *, path: str | None = None, timeout: float = 10.0) -> list[Any]:
        """Poll until at least ``count`` events were delivered to ``path``; return them all."""
        self.wait_for(lambda _: len(self.events(path)) >= count, path=path, timeout=timeout)
        return self.events(path)

    # --- serving ----------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        body = _read_body(http)
        request = RecordedRequest(
            method=http.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in http.headers.items()},
            body=body,
            received_at=time.time(),
        )
        with self._lock:
            self._requests.append(request)
        reply = self._reply_for(request)
        if reply.delay:
            time.sleep(reply.delay)
        payload, headers = reply.encoded()
        http.send_response(reply.status)
        for name, value in headers.items():
            http.send_header(name, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        if http.command != "HEAD":
            http.wfile.write(payload)

    def _reply_for(self, request: RecordedRequest) -> Reply:
        if self.handler is not None:
            custom = self.handler(request)
            if custom is not None:
                return custom
        with self._lock:
            config = self._config(request.path)
            if request.method == "POST" and request.event_type == "SubscriptionValidation":
                return _validation_reply(config.validation, request)
            if request.method == "OPTIONS":
                return _options_reply(config.options, request)
            if config.queued:
                return config.queued.popleft()
            return config.default


def _read_body(http: BaseHTTPRequestHandler) -> bytes:
    if http.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(http.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while http.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(http.rfile.read(size))
            http.rfile.readline()
    length = int(http.headers.get("Content-Length") or 0)
    return http.rfile.read(length) if length else b""


def _validation_reply(behaviour: Behaviour, request: RecordedRequest) -> Reply:
    if isinstance(behaviour, Reply):
        return behaviour
    if behaviour == "manual":
        return Reply(200)
    events = request.events()
    code = events[0]["data"]["validationCode"] if events else ""
    if behaviour == "wrong":
        return Reply(200, {"validationResponse": "not-" + code})
    if behaviour == "echo":
        return Reply(200, {"validationResponse": code})
    raise ValueError(f"unknown validation behaviour {behaviour!r}")


def _options_reply(behaviour: Behaviour, request: RecordedRequest) -> Reply:
    if isinstance(behaviour, Reply):
        return behaviour
    if behaviour == "echo":
        origin = request.header("webhook-request-origin") or ""
        return Reply(200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
    if behaviour == "*":
        return Reply(200, headers={"WebHook-Allowed-Origin": "*"})
    if behaviour == "refuse":
        return Reply(200)
    raise ValueError(f"unknown options behaviour {behaviour!r}")


def validation_codes(requests: Iterable[RecordedRequest]) -> list[tuple[str, str]]:
    """(validationCode, validationUrl) of each validation request, in order."""
    found = []
    for r in requests:
        for event in r.events():
            if event.get("eventType") == VALIDATION_EVENT_TYPE:
                found.append((event["data"]["validationCode"], event["data"]["validationUrl"]))
    return found
