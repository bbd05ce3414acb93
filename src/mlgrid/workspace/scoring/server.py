"""The scoring process of a Local endpoint: ``python -m mlgrid.workspace.scoring.server``.

::

    python -m mlgrid.workspace.scoring.server --port 0 --model-dir DIR \\
        [--model name:version ...] [--entry-script PATH] [--port-file FILE] [--parent-pid PID]

It loads the models (or runs the entry script's ``init()``) *before* it listens, so answering
the health check means "ready to score"; a model that fails to load ends the process with exit
code 3 and the traceback on stderr (the deployment's log). Then it serves, on 127.0.0.1 only:

* ``GET /`` and ``GET /health`` — 200 ``{"status": "Healthy", ...}``;
* ``POST /score`` — the body goes to the model (see ``inputs``) or to the script's
  ``run(raw_data)``; 200 with the result, 400 for input the model refuses, 500 when scoring
  raised.

Requests are scored one at a time on the event loop (scikit-learn predictions on small inputs
take well under a millisecond; an entry script never runs concurrently with itself).

``--port 0`` lets the system choose a free port; with ``--any-port`` a given port that is taken
falls back to a free one. The port actually bound is written to ``--port-file`` (atomically)
once the socket listens. With ``--parent-pid`` the process ends when that process (the mlgrid
server) is gone: Linux delivers SIGTERM on the parent's death, and a watchdog thread checks as
well.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from mlgrid.workspace.scoring import inputs
from mlgrid.workspace.scoring.loaders import Answer, Scorer, build_scorer

MAX_BODY_BYTES = 64 * 1024 * 1024
LOAD_FAILED_EXIT_CODE = 3
KEEP_ALIVE_SECONDS = 75
_PR_SET_PDEATHSIG = 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ScoringApp:
    """A minimal ASGI app: health and score, nothing else (every hop costs latency)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self._health = inputs.encode({"status": "Healthy", **scorer.describe()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path in ("/", "/health"):
            if method in ("GET", "HEAD"):
                await _respond(send, Answer(200, self._health))
            else:
                await _respond(send, _error(405, "MethodNotAllowed", "use GET"), allow="GET, HEAD")
            return
        if path == "/score":
            if method != "POST":
                await _respond(send, _error(405, "MethodNotAllowed", "POST the input"), allow="POST")
                return
            body = await _read_body(receive)
            if body is None:
                await _respond(
                    send, _error(413, "PayloadTooLarge", f"the body exceeds {MAX_BODY_BYTES} bytes")
                )
                return
            await _respond(send, self.scorer.score(body))
            return
        await _respond(send, _error(404, "NotFound", f"no route {path}; POST /score or GET /health"))


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, inputs.error_body(code, message))


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, answer: Answer, allow: str | None = None) -> None:
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


# --- process plumbing ------------------------------------------------------------------------


def _die_with_parent(parent_pid: int | None) -> None:
    """End this process when the mlgrid server that started it is gone."""
    if parent_pid is None:
        return
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the signal was armed

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5.0)
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _bind(port: int, any_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        if not (any_port and port and exc.errno == errno.EADDRINUSE):
            sock.close()
            raise
        print(f"port {port} is taken; choosing a free one", flush=True)
        sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _write_port_file(path: Path, port: int) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlgrid.workspace.scoring.server", description="Serve one deployment on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--any-port", action="store_true", help="fall back to a free port if --port is taken")
    parser.add_argument("--model-dir", type=Path, required=True, help="directory of <name>/<version>/ models")
    parser.add_argument("--model", action="append", default=[], help="name:version to load, in order")
    parser.add_argument("--entry-script", type=Path, default=None, help="a script with init() and run()")
    parser.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    _die_with_parent(args.parent_pid)
    what = f"entry script {args.entry_script}" if args.entry_script else ", ".join(args.model) or "models"
    print(f"scoring process {os.getpid()}: loading {what}", flush=True)
    try:
        scorer = build_scorer(args.model_dir, args.model, args.entry_script)
    except BaseException as exc:
        traceback.print_exc()
        print(f"scoring process: could not load the deployment: {type(exc).__name__}: {exc}", flush=True)
        return LOAD_FAILED_EXIT_CODE
    try:
        sock = _bind(args.port, args.any_port)
    except OSError as exc:
        print(f"scoring process: cannot listen on 127.0.0.1:{args.port}: {exc}", flush=True)
        return 2
    port = int(sock.getsockname()[1])
    if args.port_file is not None:
        _write_port_file(args.port_file, port)
    print(f"scoring process {os.getpid()}: listening on http://127.0.0.1:{port}", flush=True)

    import uvicorn

    config = uvicorn.Config(
        ScoringApp(scorer),
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
