"""A TCP relay between one node and PostgreSQL that a test can cut off, as a broken network would.

``cut()`` black-holes every connection through the relay in both directions: no byte is
forwarded, no connection is closed, new connections are accepted but not connected onwards.
Neither end learns anything (no reset, no EOF): a node's statements simply never get an
answer, and PostgreSQL's backends sit waiting, exactly as across a partitioned network.
``heal()`` forwards again, including what was sent meanwhile (TCP retransmits after a
partition heals): a statement a cut-off node sent before it knew it was cut off arrives
late, which is what fencing must refuse.

The relay also records which of its connections to PostgreSQL were open when (their local
ports, as ``inet_client_port()`` shows them inside PostgreSQL), so a test can attribute a
write it finds in the database to the node behind the relay.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

#: How often a forwarding thread looks at the switch and the stop flag (seconds).
POLL = 0.1


@dataclass
class Upstream:
    """One connection from the relay to PostgreSQL: its local port and when it was open."""

    port: int
    opened_at: float
    closed_at: float | None = None

    def covers(self, port: int, moment: float) -> bool:
        return port == self.port and self.opened_at <= moment <= (self.closed_at or float("inf"))


class Relay:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.upstreams: list[Upstream] = []

    # --- the switch -----------------------------------------------------------------------

    def cut(self) -> None:
        """Stop forwarding in both directions (connections stay open)."""
        self._open.clear()

    def heal(self) -> None:
        """Forward again, including what waited while cut."""
        self._open.set()

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    def attributes(self, port: int, moment: float) -> bool:
        """Whether a PostgreSQL backend with client port ``port`` at time ``moment`` (epoch
        seconds) was one of this relay's connections."""
        with self._lock:
            return any(u.covers(port, moment) for u in self.upstreams)

    # --- running --------------------------------------------------------------------------

    def __enter__(self) -> Relay:
        thread = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection (both ends see EOF) and stop."""
        self._stop.set()
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self._listener.settimeout(POLL)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="relay-conn", daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)

    def _wait_open(self) -> bool:
        """Block while cut; False when the relay stops."""
        while not self._stop.is_set():
            if self._open.wait(POLL):
                return not self._stop.is_set()
        return False

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._sockets.add(client)
        upstream: socket.socket | None = None
        record: Upstream | None = None
        try:
            if not self._wait_open():  # a connection made during a cut goes nowhere until healed
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            record = Upstream(int(upstream.getsockname()[1]), time.time())
            with self._lock:
                self._sockets.add(upstream)
                self.upstreams.append(record)
            peers = {client: upstream, upstream: client}
            while self._wait_open():
                readable, _, _ = select.select(list(peers), [], [], POLL)
                if not self._open.is_set():
                    continue  # cut meanwhile: leave the bytes where they are
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            if record is not None:
                record.closed_at = time.time()
            for sock in [client] if upstream is None else [client, upstream]:
                with contextlib.suppress(OSError):
                    sock.close()
                with self._lock:
                    self._sockets.discard(sock)
