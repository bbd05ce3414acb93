"""One exception hierarchy for the whole product.

Every error a caller can see is an ``MlgridError`` carrying an error ``code``, an HTTP
``status`` and optional ``details`` (each a code and message, as Azure's error body has).
``api/`` maps them to the JSON envelope of SPEC §3; services and pure modules raise them
without knowing about HTTP. Foreign exceptions are translated at the boundary with the cause
kept (``raise NotFound(...) from exc``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlgrid.domain.error_codes import ErrorCode


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of ``error.details``: which field (or event index) is wrong and why."""

    code: str
    message: str
    target: str | None = None

    def as_json(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.target is not None:
            body["target"] = self.target
        return body


@dataclass
class MlgridError(Exception):
    """Root of every error mlgrid raises on purpose."""

    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    code: str = ErrorCode.INTERNAL_ERROR
    status: int = 500

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, object]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [d.as_json() for d in self.details],
            }
        }


@dataclass
class BadRequest(MlgridError):
    """The request is malformed or a field is invalid (400)."""

    code: str = ErrorCode.BAD_REQUEST
    status: int = 400


@dataclass
class InvalidField(BadRequest):
    """A named field has a value outside what the API accepts (400).

    ``field_name`` is the JSON path of the field (``properties.retryPolicy.maxDeliveryAttempts``,
    ``[3].eventType``); the message always names it.
    """

    field_name: str = ""
    code: str = ErrorCode.INVALID_REQUEST

    def __post_init__(self) -> None:
        if self.field_name and self.field_name not in self.message:
            self.message = f"{self.field_name}: {self.message}"
        if not self.details and self.field_name:
            self.details = [ErrorDetail(self.code, self.message, self.field_name)]
        super().__post_init__()


@dataclass
class Unauthorized(MlgridError):
    """No credentials, or credentials that do not identify anyone (401)."""

    code: str = ErrorCode.UNAUTHORIZED
    status: int = 401


@dataclass
class Forbidden(MlgridError):
    """A known principal without the role the operation needs (403)."""

    code: str = ErrorCode.FORBIDDEN
    status: int = 403


@dataclass
class NotFound(MlgridError):
    """The addressed resource does not exist (404)."""

    code: str = ErrorCode.NOT_FOUND
    status: int = 404


@dataclass
class MethodNotAllowed(MlgridError):
    code: str = ErrorCode.METHOD_NOT_ALLOWED
    status: int = 405


@dataclass
class Conflict(MlgridError):
    """The resource is in a state that forbids the operation (409)."""

    code: str = ErrorCode.CONFLICT
    status: int = 409


@dataclass
class LeaseLost(Conflict):
    """This node no longer holds the lease a write was made under (another node took it, or
    this node was declared dead): the write is refused and the duty stops (``store/leases.py``)."""


@dataclass
class AlreadyExists(Conflict):
    code: str = ErrorCode.ALREADY_EXISTS


@dataclass
class PreconditionFailed(MlgridError):
    """An ``If-Match`` header did not match the current ``etag`` (412)."""

    code: str = ErrorCode.PRECONDITION_FAILED
    status: int = 412


@dataclass
class PayloadTooLarge(MlgridError):
    """An event or a request is over 1 MB (413)."""

    code: str = ErrorCode.PAYLOAD_TOO_LARGE
    status: int = 413


@dataclass
class UnsupportedMediaType(MlgridError):
    code: str = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    status: int = 415


@dataclass
class WebhookValidationFailed(BadRequest):
    """The webhook did not complete the subscription validation handshake (400)."""

    code: str = ErrorCode.WEBHOOK_VALIDATION_FAILED


@dataclass
class CodeExecutionDisabled(Conflict):
    """The server has no way to contain user code and was not told to run it uncontained."""

    code: str = ErrorCode.CODE_EXECUTION_DISABLED


@dataclass
class ServiceUnavailable(MlgridError):
    code: str = ErrorCode.SERVICE_UNAVAILABLE
    status: int = 503


def invalid(field_name: str, reason: str) -> InvalidField:
    """Shorthand used by validators: ``raise invalid("properties.x", "must be 1-30")``."""
    return InvalidField(message=f"{field_name}: {reason}", field_name=field_name)
