"""Network ``api`` of user code: the server's API, and nothing else, inside a job's network
namespace.

TCP does not cross network namespaces; the file system does. So the server listens on a Unix
socket (``ApiSocket``, ``<sandbox root>/api.sock``) whose connections it passes to its own
port, and the job's command is preceded by a relay (``api_relay_argv``) that listens on
``127.0.0.1:<server port>`` inside the namespace and passes each connection to that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

API_SOCKET = "api.sock"
"""The socket's name in the sandbox root."""


# Run inside the job's network namespace, as the job's user, just before the job's command:
# listen on 127.0.0.1:<port> (the server's port, so MLGRID_URL keeps its form), fork a relay
# that passes each connection to the server's API socket (a Unix socket: the file system
# crosses network namespaces, TCP does not), and exec the command. The relay dies with the
# job (its uid is killed, or its pid namespace ends).
_API_RELAY = """
import os, socket, sys, threading
path, port = sys.argv[1], int(sys.argv[2])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
if os.fork() == 0:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    def pump(source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        for end, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                end.shutdown(how)
            except OSError:
                pass
    def serve(client):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()
listener.close()
os.execvp(sys.argv[3], sys.argv[3:])
"""


def api_relay_argv(
    socket_path: Path, port: int, argv: Sequence[str], python: str = sys.executable
) -> list[str]:
    """``argv`` preceded by the relay of the server's API onto ``127.0.0.1:port``."""
    return [python, "-I", "-c", _API_RELAY, str(socket_path), str(port), *argv]


class ApiSocket:
    """The server's side of network ``api``: a Unix socket (0666, inside the 0711 sandbox
    root, so every job's uid may connect, as any local user may to the loopback port) whose
    connections are passed to the server's own TCP port."""

    def __init__(self, path: Path, host: str, port: int) -> None:
        self.path = path
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._connect, path=str(self.path))
        os.chmod(self.path, 0o666)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            for end in (writer, upstream_writer):
                end.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        with contextlib.suppress(OSError):
            self.path.unlink()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        pass
