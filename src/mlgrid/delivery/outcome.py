"""What one delivery attempt came to, as a value.

The dispatcher turns whatever happened on the wire (an HTTP status, a timeout, a refused
connection, a DNS failure, an endpoint our safety rules refuse) into an ``AttemptOutcome``
here, and only here, so that the retry policy (``retry.py``), the dead-letter record
(``lastDeliveryOutcome``) and the metrics all speak the same vocabulary: Azure Event Grid's
delivery outcome names (``Busy``, ``TimedOut``, ``NotFound``, ``GenericError``, ...).

SPEC §6.2 is the contract: success is 200–204 only (redirects are failures); 400, 401, 403,
410 and 413 are not retried; 404, 408 and 503 carry a minimum delay before the next attempt
(which only the default retry schedule applies, see ``retry.py``); 429 carries its
``Retry-After``, which is always honoured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

__all__ = [
    "MAX_RETRY_AFTER",
    "NOT_RETRIED_STATUSES",
    "AttemptOutcome",
    "ErrorKind",
    "OutcomeName",
    "classify_error",
    "classify_response",
    "parse_retry_after",
]


class OutcomeName(StrEnum):
    """Azure Event Grid's names for the result of a delivery attempt (``lastDeliveryOutcome``).

    ``EndpointNotAllowed`` is ours: Azure has no endpoint safety rules (SPEC §6.6), and
    reusing ``Forbidden`` would make a refusal by this server look like a 403 from the
    endpoint. ``Probation`` is Azure's name for an event that never got an attempt because
    its endpoint was unhealthy (our open circuit, SPEC §6.4) when it ran out of time.
    ``InvalidDeliveryRequest`` is ours too: the request could not be built or sent at all
    (e.g. a header value the HTTP client refuses), so no attempt reached the endpoint and no
    later attempt could do better.
    """

    SUCCEEDED = "Succeeded"
    BUSY = "Busy"
    TIMED_OUT = "TimedOut"
    NOT_FOUND = "NotFound"
    BAD_REQUEST = "BadRequest"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    GONE = "Gone"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    SOCKET_ERROR = "SocketError"
    RESOLUTION_ERROR = "ResolutionError"
    GENERIC_ERROR = "GenericError"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    PROBATION = "Probation"
    INVALID_REQUEST = "InvalidDeliveryRequest"


class ErrorKind(StrEnum):
    """Failures without an HTTP response, named by what the caller observed.

    The dispatcher maps its client library's exceptions onto these (SPEC: foreign errors are
    translated at the boundary), so this module never imports a network library.
    """

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    TLS = "tls"
    DNS = "dns"
    UNSAFE_ENDPOINT = "unsafe_endpoint"
    REDIRECT = "redirect"
    INVALID_REQUEST = "invalid_request"
    OTHER = "other"


#: Statuses after which another attempt cannot help: the event is dead-lettered (or dropped)
#: at once with ``UndeliverableDueToClientError`` (SPEC §6.2, Azure's webhook table plus 410).
NOT_RETRIED_STATUSES: frozenset[int] = frozenset({400, 401, 403, 410, 413})

#: Longest ``Retry-After`` we keep. Anything longer already outlives the longest event TTL
#: (1440 minutes), so the retry policy dead-letters it just the same; the cap only keeps
#: absurd header values from overflowing ``datetime`` arithmetic.
MAX_RETRY_AFTER = timedelta(days=7)

_SUCCESS_RANGE = range(200, 205)

# Minimum waits that belong to the default schedule (SPEC §6.2); a custom schedule replaces them.
_MIN_DELAY_BY_STATUS: dict[int, timedelta] = {
    404: timedelta(minutes=5),
    408: timedelta(minutes=2),
    503: timedelta(seconds=30),
}

_NAME_BY_STATUS: dict[int, OutcomeName] = {
    400: OutcomeName.BAD_REQUEST,
    401: OutcomeName.UNAUTHORIZED,
    403: OutcomeName.FORBIDDEN,
    404: OutcomeName.NOT_FOUND,
    408: OutcomeName.TIMED_OUT,
    410: OutcomeName.GONE,
    413: OutcomeName.PAYLOAD_TOO_LARGE,
    429: OutcomeName.BUSY,
    503: OutcomeName.BUSY,
}

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class AttemptOutcome:
    """The result of one attempt, with everything the retry policy needs to decide.

    ``min_delay`` is the per-status floor of the default schedule; ``retry_after`` is the
    endpoint's own request (429), honoured whatever the schedule. ``detail`` is free text for
    logs and the UI (never used to decide anything).
    """

    succeeded: bool
    retryable: bool
    name: str
    http_status: int | None = None
    min_delay: timedelta | None = None
    retry_after: timedelta | None = None
    detail: str = ""
    #: How long the attempt took, connecting included (milliseconds), when it was timed.
    duration_ms: int | None = None
    #: What a failing endpoint answered: JSON ``{"headers": {...}, "body": "..."}``, bounded
    #: (see ``webhook.response_sample``); ``None`` for successes and attempts without an answer.
    response: str | None = None


def classify_response(status: int, retry_after: timedelta | None = None) -> AttemptOutcome:
    """Classify an HTTP response by its status code.

    ``retry_after`` is the parsed ``Retry-After`` header (see ``parse_retry_after``); it is
    kept only for 429, the one status SPEC §6.2 ties it to.
    """
    if status in _SUCCESS_RANGE:
        return AttemptOutcome(succeeded=True, retryable=False, name=OutcomeName.SUCCEEDED, http_status=status)
    name = _NAME_BY_STATUS.get(status, OutcomeName.GENERIC_ERROR)
    detail = f"HTTP {status}"
    if 300 <= status < 400:
        detail = f"HTTP {status}: redirects are not followed"
    return AttemptOutcome(
        succeeded=False,
        retryable=status not in NOT_RETRIED_STATUSES,
        name=name,
        http_status=status,
        min_delay=_MIN_DELAY_BY_STATUS.get(status),
        retry_after=retry_after if status == 429 else None,
        detail=detail,
    )


_ERROR_OUTCOMES: dict[ErrorKind, tuple[OutcomeName, bool]] = {
    ErrorKind.TIMEOUT: (OutcomeName.TIMED_OUT, True),
    ErrorKind.CONNECTION_REFUSED: (OutcomeName.SOCKET_ERROR, True),
    ErrorKind.CONNECTION_RESET: (OutcomeName.SOCKET_ERROR, True),
    ErrorKind.TLS: (OutcomeName.SOCKET_ERROR, True),
    ErrorKind.DNS: (OutcomeName.RESOLUTION_ERROR, True),
    # Refused by our own rules: retrying would be refused again, so this is final, like a
    # client error from the endpoint (and the dead-letter reason says so).
    ErrorKind.UNSAFE_ENDPOINT: (OutcomeName.ENDPOINT_NOT_ALLOWED, False),
    ErrorKind.REDIRECT: (OutcomeName.GENERIC_ERROR, True),
    # The request itself cannot exist (a stored header value the HTTP client refuses): the
    # same request would be refused on every retry, so this is final at once.
    ErrorKind.INVALID_REQUEST: (OutcomeName.INVALID_REQUEST, False),
    ErrorKind.OTHER: (OutcomeName.GENERIC_ERROR, True),
}


def classify_error(kind: ErrorKind | str, detail: str = "") -> AttemptOutcome:
    """Classify a failure that produced no HTTP response.

    Timeouts, connection and DNS failures follow the retry schedule with no per-status
    minimum; an endpoint refused by the safety rules is final. ``kind`` may be the enum or
    its string value; an unknown string is a programming error (``ValueError``).
    """
    error_kind = ErrorKind(kind)
    name, retryable = _ERROR_OUTCOMES[error_kind]
    return AttemptOutcome(succeeded=False, retryable=retryable, name=name, detail=detail or error_kind.value)


def parse_retry_after(value: str, now: datetime) -> timedelta | None:
    """Parse a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns how long to wait from ``now`` (never negative; a date in the past means "now"),
    capped at ``MAX_RETRY_AFTER``, or ``None`` when the value is neither form, in which case
    the header is ignored rather than failing the delivery. A fractional number of seconds
    is accepted although the RFC only allows digits: being lenient costs nothing here.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        if seconds >= MAX_RETRY_AFTER.total_seconds():
            return MAX_RETRY_AFTER
        return timedelta(seconds=seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 5322 "-0000" (and HTTP-dates are GMT by definition): treat as UTC.
        when = when.replace(tzinfo=UTC)
    wait = when - now
    if wait <= timedelta(0):
        return timedelta(0)
    return min(wait, MAX_RETRY_AFTER)
