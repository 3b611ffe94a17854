"""Every error leaves as a real status and `{"resultCode", "errorMsg", "detail"}`."""

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.domain.errors import (
    AuthFailed,
    Forbidden,
    InvalidParam,
    RequestError,
    StateConflict,
    TaskNotFound,
    UpstreamError,
)
from conveyor.settings import format_loc
from conveyor.web.routes import not_found_page

log = logging.getLogger("conveyor.api")


class BodyTooLarge(RequestError):
    """413: the request body is larger than the endpoint accepts."""


class UnsupportedMediaType(RequestError):
    """415: the request body is not of a media type the endpoint reads."""


RETRY_AFTER_S = 5
MESSAGES = {
    400: "param is illegal!",
    401: "auth failed!",
    403: "forbidden",
    404: "task not found",
    405: "method not allowed",
    409: "task state conflict",
    503: "service unavailable",
    413: "request body too large",
    415: "unsupported media type",
    500: "internal error",
}
_STATUS: dict[type[RequestError], int] = {
    InvalidParam: 400,
    AuthFailed: 401,
    Forbidden: 403,
    TaskNotFound: 404,
    StateConflict: 409,
    BodyTooLarge: 413,
    UnsupportedMediaType: 415,
}
# A detail longer than this is cut: it is for a person, and a body of many thousand
# bad items must not come back as a megabyte of complaints.
_MAX_PROBLEMS = 10


def error_response(
    status: int, detail: str | None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"resultCode": status, "errorMsg": MESSAGES[status]}
    if detail:
        body["detail"] = encodable(detail)
    return JSONResponse(body, status_code=status, headers=headers)


def encodable(text: str) -> str:
    """`text` with any lone surrogate (from a caller's JSON) escaped, so it encodes as
    UTF-8: echoing a bad value must not turn a 400 into a 500."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Pydantic errors as `targets[0].build.repos[1].pr: Input should be ...`."""
    parts = []
    for err in errors[:_MAX_PROBLEMS]:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        where = format_loc(loc) or "body"
        msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "")
        if err.get("type") == "missing":
            msg = "required"
        parts.append(f"{where}: {msg}")
    if len(errors) > _MAX_PROBLEMS:
        parts.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(parts)


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def _documented_methods(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    """(path pattern, methods) of every path the OpenAPI document publishes."""
    found: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "documented_methods", None
    )
    if found is None:
        found = [
            (
                re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))),
                [m.upper() for m in ops],
            )
            for path, ops in app.openapi()["paths"].items()
        ]
        app.state.documented_methods = found
    return found


def _allow(request: Request, exc: StarletteHTTPException) -> dict[str, str]:
    """Every method some route of the path takes (RFC 9110 15.5.6): Starlette names only
    the first route's when one path has several. HEAD wherever GET is: HEAD is answered
    as GET (api/app.py)."""
    methods = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()]
    for pattern, documented in _documented_methods(request.app):
        if pattern.fullmatch(request.url.path):
            methods += [m for m in documented if m not in methods]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return {"Allow": ", ".join(methods)}


def _wants_a_page(request: Request) -> bool:
    """A browser that asked for a page at an unknown address gets an HTML 404; API
    clients, and anything under /api/ or /static/, get the JSON one."""
    path = request.url.path
    return (
        request.method in ("GET", "HEAD")
        and not path.startswith(("/api/", "/static/"))
        and "text/html" in request.headers.get("accept", "")
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.detail, headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, describe_validation_errors(exc.errors()))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            if _wants_a_page(request):
                return not_found_page()
            return error_response(404, f"no such path: {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error_response(
                405, f"{request.method} is not allowed on {request.url.path}", _allow(request, exc)
            )
        status = exc.status_code if exc.status_code in MESSAGES else 400
        return error_response(status, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        if request.app.state.container.db.unreachable(exc):
            log.warning("request %s: the database is unreachable: %s", rid, exc)
            return error_response(
                503,
                f"the database cannot be reached; try again shortly (request id {rid})",
                {"Retry-After": str(RETRY_AFTER_S), "X-Request-ID": rid},
            )
        log.error("request %s failed: %s %s", rid, request.method, request.url.path, exc_info=exc)
        return error_response(500, f"request id {rid}", {"X-Request-ID": rid})

    async def on_upstream_error(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.warning("request %s: %s", rid, exc)
        return error_response(500, f"{exc} (request id {rid})")

    app.add_exception_handler(RequestError, on_request_error)
    app.add_exception_handler(UpstreamError, on_upstream_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
