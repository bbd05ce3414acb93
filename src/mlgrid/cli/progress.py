"""Progress of the commands that wait (``--wait`` on jobs and deployments, drift backfills).

On a terminal, a Rich spinner whose text is the current state and the time waited; elsewhere
(a CI log, a pipe) one line on stderr each time the state changes, so a log shows what
happened without a spinner's control characters. stdout is left to the command's result.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.status import Status


class WaitProgress:
    """Shows "``subject``: state (12 s)" while a command waits; used as a context manager."""

    def __init__(self, err: Console, subject: str, state: str) -> None:
        self._err = err
        self._subject = subject
        self._started = time.monotonic()
        self._last: str | None = None
        self._status = Status(self._text(state), console=err) if err.is_terminal else None
        self.update(state)

    def _text(self, state: str) -> str:
        return f"{self._subject}: {state} ({time.monotonic() - self._started:.0f} s)"

    def __enter__(self) -> WaitProgress:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, state: str) -> None:
        """A new reading of the state: the spinner's text, or a line when it changed."""
        if self._status is not None:
            self._status.update(self._text(state))
        elif state != self._last:
            self._err.print(self._text(state), markup=False, highlight=False)
        self._last = state
