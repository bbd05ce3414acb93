"""The one place where exceptions become HTTP responses, all in SPEC §3's error envelope."""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from mlgrid.api.responses import ExactJSONResponse
from mlgrid.domain.error_codes import ErrorCode
from mlgrid.errors import ErrorDetail, MlgridError, ServiceUnavailable
from mlgrid.store.faults import DatabaseFault, database_fault

log = logging.getLogger("mlgrid.api")

#: ``Retry-After`` on a 503 for a database fault: long enough not to hammer a database that
#: is restarting, short enough that clients notice the recovery soon.
RETRY_AFTER_SECONDS = 5
#: Roots of the exceptions a database fault arrives as (see ``store/faults.py``).
_DRIVER_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

_HTTP_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "BadRequest",
}


def error_response(error: MlgridError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return ExactJSONResponse(error.as_json(), status_code=error.status, headers=headers)


def _location(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    if parts and parts[0] in {"query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(MlgridError)
    async def _mlgrid(_request: Request, exc: MlgridError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> Response:
        details = [
            ErrorDetail(ErrorCode.INVALID_REQUEST, f"{_location(e['loc'])}: {e['msg']}", _location(e["loc"]))
            for e in exc.errors()
        ]
        message = details[0].message if details else "invalid request"
        return error_response(MlgridError(message, details, code=ErrorCode.INVALID_REQUEST, status=400))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return _method_not_allowed(request)
        code = _HTTP_CODES.get(exc.status_code, "Error")
        message = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        if exc.status_code == 405:
            message = "method not allowed on this route"
        response = error_response(MlgridError(message, [], code=code, status=exc.status_code))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def _driver_error(request: Request, exc: Exception) -> Response:
        # Registered for the database drivers' exception roots (and OS errors), so these are
        # answered here, by the exception middleware: the catch-all below would answer too,
        # but Starlette re-raises from there and the server logs a traceback per request.
        fault = database_fault(exc)
        if fault is None:
            log.exception("unhandled error", exc_info=exc)
            return error_response(
                MlgridError("internal server error", [], code=ErrorCode.INTERNAL_ERROR, status=500)
            )
        return database_unavailable(request, fault, exc)

    for driver_error in _DRIVER_ERRORS:
        app.add_exception_handler(driver_error, _driver_error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        fault = database_fault(exc)
        if fault is not None:
            return database_unavailable(request, fault, exc)
        log.exception("unhandled error", exc_info=exc)
        return error_response(
            MlgridError("internal server error", [], code=ErrorCode.INTERNAL_ERROR, status=500)
        )


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (the router's own 405 names only the
    methods of the first route whose path matched), plus ``OPTIONS``."""
    methods: set[str] = set()
    pending = list(request.app.router.routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)  # FastAPI's wrapper of an included router
        if included is not None:
            pending.extend(included.routes)
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if not methods:
        return []
    methods.add("OPTIONS")
    return sorted(methods)


def _method_not_allowed(request: Request) -> Response:
    """``OPTIONS`` on a resource answers 204 with ``Allow``; any other method it does not
    take answers 405 in the error envelope with the same ``Allow``."""
    methods = allowed_methods(request)
    allow = {"Allow": ", ".join(methods)}
    if request.method == "OPTIONS" and methods:
        return Response(status_code=204, headers=allow)
    message = f"{request.method} is not allowed here; allowed: {', '.join(methods)}"
    response = error_response(MlgridError(message, [], code=ErrorCode.METHOD_NOT_ALLOWED, status=405))
    response.headers.update(allow)
    return response


def database_unavailable(request: Request, fault: DatabaseFault, exc: BaseException) -> Response:
    """503 in the error envelope with ``Retry-After``; the outage logs once (``DatabaseHealth``)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.db.health.failed(fault, exc)
    error = ServiceUnavailable(
        message=f"the database is {fault.value}; try again shortly",
        details=[ErrorDetail(ErrorCode.DATABASE_UNAVAILABLE, f"the database is {fault.value}", "database")],
        code=ErrorCode.DATABASE_UNAVAILABLE,
    )
    response = error_response(error)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
