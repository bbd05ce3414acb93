"""Faults of the database told apart from bugs, and the outage they belong to.

A request that fails because the database is away, read-only or out of space is not a bug of
the server and not the client's fault: it is answered ``503`` with ``Retry-After`` (the API's
error handlers ask ``database_fault``), and ``/readyz`` says ``503`` until the database takes
a write again. One outage is one log line when it starts and one when it ends
(``DatabaseHealth``), not a traceback per request.

``database_fault`` reads the exception chain (``__cause__``/``__context__`` and SQLAlchemy's
``orig``): SQLite's result codes (``SQLITE_FULL``, ``SQLITE_READONLY``, ``SQLITE_IOERR``,
``SQLITE_CANTOPEN``, ``SQLITE_BUSY`` past its timeout), asyncpg's connection and resource
errors (SQLSTATE classes 08, 53, 57P and 25006), SQLAlchemy's disconnect flag, and OS errors
raised from inside the database drivers (a refused or reset connection, no space left).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from enum import StrEnum
from types import TracebackType

__all__ = ["DatabaseFault", "DatabaseHealth", "database_fault"]

log = logging.getLogger("mlgrid.store")


class DatabaseFault(StrEnum):
    UNREACHABLE = "unreachable"
    READ_ONLY = "read-only"
    FULL = "out of space"


_SQLITE_CODES = {
    sqlite3.SQLITE_FULL: DatabaseFault.FULL,
    sqlite3.SQLITE_READONLY: DatabaseFault.READ_ONLY,
    sqlite3.SQLITE_IOERR: DatabaseFault.UNREACHABLE,
    sqlite3.SQLITE_CANTOPEN: DatabaseFault.UNREACHABLE,
    sqlite3.SQLITE_BUSY: DatabaseFault.UNREACHABLE,
    sqlite3.SQLITE_LOCKED: DatabaseFault.UNREACHABLE,
}
_SQLITE_MESSAGES = (
    ("database or disk is full", DatabaseFault.FULL),
    ("readonly database", DatabaseFault.READ_ONLY),
    ("disk i/o error", DatabaseFault.UNREACHABLE),
    ("unable to open database", DatabaseFault.UNREACHABLE),
    ("database is locked", DatabaseFault.UNREACHABLE),
)
_OS_ERRNOS = {
    errno.ENOSPC: DatabaseFault.FULL,
    errno.EDQUOT: DatabaseFault.FULL,
    errno.EROFS: DatabaseFault.READ_ONLY,
}
#: What asyncpg says when a connection died under an operation (the server went away).
_LOST_CONNECTION_HINTS = ("connection is closed", "connection was closed", "another operation")
_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3", "mlgrid.store")


def _sqlstate_fault(sqlstate: str) -> DatabaseFault | None:
    if sqlstate == "25006":  # read_only_sql_transaction (a standby, default_transaction_read_only)
        return DatabaseFault.READ_ONLY
    if sqlstate in ("53100", "53200"):  # disk_full, out_of_memory
        return DatabaseFault.FULL
    if sqlstate.startswith(("08", "53", "57P")):  # connection, resources, shutdown
        return DatabaseFault.UNREACHABLE
    return None


def _raised_by_a_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_DRIVER_MODULES):
            return True
        tb = tb.tb_next
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    stack = [exc]
    while stack and len(seen) < 16:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nested in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                stack.append(nested)
    return seen


def database_fault(exc: BaseException) -> DatabaseFault | None:
    """What kind of database fault ``exc`` is, or ``None`` for anything else."""
    for error in _chain(exc):
        if getattr(error, "connection_invalidated", False):
            return DatabaseFault.UNREACHABLE
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if isinstance(code, int) and (code & 0xFF) in _SQLITE_CODES:
                return _SQLITE_CODES[code & 0xFF]
            message = str(error).lower()
            for fragment, fault in _SQLITE_MESSAGES:
                if fragment in message:
                    return fault
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            found = _sqlstate_fault(sqlstate)
            if found is not None:
                return found
        if type(error).__module__.startswith("asyncpg"):
            name, message = type(error).__name__, str(error).lower()
            if "Connection" in name or (
                name in ("InterfaceError", "InternalClientError")
                and any(hint in message for hint in _LOST_CONNECTION_HINTS)
            ):
                return DatabaseFault.UNREACHABLE
        if type(error).__name__ == "InterfaceError" and "connection is closed" in str(error).lower():
            return DatabaseFault.UNREACHABLE  # SQLAlchemy's wrapper of asyncpg's
        if isinstance(error, OSError) and error.errno in _OS_ERRNOS:
            return _OS_ERRNOS[error.errno]
        if isinstance(error, (ConnectionError, TimeoutError, OSError)) and _raised_by_a_driver(
            error.__traceback__
        ):
            return DatabaseFault.UNREACHABLE
    return None


#: Quiet time after the last failure before a successful write ends an outage.
_SETTLE_SECONDS = 2.0


class DatabaseHealth:
    """Whether the database is in an outage, and the one log line at each of its ends."""

    def __init__(self) -> None:
        self.fault: DatabaseFault | None = None
        self.since: float | None = None
        self.last_failure = 0.0
        self.failures = 0

    def failed(self, fault: DatabaseFault, exc: BaseException) -> None:
        self.failures += 1
        self.last_failure = time.monotonic()
        if self.fault is None:
            self.fault, self.since = fault, time.time()
            log.error(
                "database %s: answering 503 until it recovers (%s: %s)",
                fault.value,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
                extra={"action": "database_outage", "fault": fault.value},
            )

    def succeeded(self) -> None:
        """A write committed. It ends the outage only once no failure came for a moment: while
        a database goes down, some writes still get through between failures, and one outage
        must stay one pair of log lines."""
        if self.fault is not None and time.monotonic() - self.last_failure >= _SETTLE_SECONDS:
            self.recovered()

    def recovered(self) -> None:
        if self.fault is not None:
            seconds = time.time() - (self.since or time.time())
            log.warning(
                "database available again after %.1f s (%d requests answered 503)",
                seconds,
                self.failures,
                extra={"action": "database_recovered", "seconds": seconds, "failures": self.failures},
            )
        self.fault, self.since, self.failures = None, None, 0


def log_failure(
    logger: logging.Logger, health: DatabaseHealth | None, message: str, exc: BaseException, action: str
) -> None:
    """How a background duty reports a failed pass: a database fault joins the outage (one
    line for all of it, in ``DatabaseHealth``); anything else is logged with its traceback."""
    fault = database_fault(exc)
    if fault is not None and health is not None:
        health.failed(fault, exc)
        return
    logger.error(message, exc_info=exc, extra={"action": action})


class QuietFailures:
    """The failed passes of one background loop while the database is away: the first is a
    warning with its reason, the next ones are silent (counted), and the first pass that
    succeeds afterwards says ``recovered``: one pair of lines per outage instead of a
    traceback per pass. The fault also joins the server-wide outage (``DatabaseHealth``:
    503s and ``/readyz``). A failure that is not a database fault is a bug and keeps its
    traceback every time."""

    def __init__(self, logger: logging.Logger, duty: str, health: DatabaseHealth | None) -> None:
        self._logger = logger
        self._duty = duty
        self._health = health
        self.failures = 0
        self._since = 0.0

    def failed(self, exc: BaseException, message: str, action: str, **extra: object) -> None:
        fault = database_fault(exc)
        if fault is None:
            self._logger.error(message, exc_info=exc, extra={"action": action, **extra})
            return
        if self._health is not None:
            self._health.failed(fault, exc)
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
            reason = str(exc).splitlines()[0] if str(exc) else ""
            self._logger.warning(
                "%s paused: database %s (%s: %s); retrying quietly until it is back",
                self._duty, fault.value, type(exc).__name__, reason,
                extra={"action": f"{action}_paused", "fault": fault.value, **extra},
            )

    def succeeded(self) -> None:
        if self.failures:
            seconds = time.monotonic() - self._since
            self._logger.warning(
                "%s recovered after %.1f s (%d failed passes)", self._duty, seconds, self.failures,
                extra={"action": "loop_recovered", "duty": self._duty, "failures": self.failures},
            )
            self.failures = 0
