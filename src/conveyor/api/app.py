"""create_app(): the FastAPI application for one container of services."""

import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.deps import GITLAB_TOKEN_SCHEME, SECURITY_SCHEMES, error_responses
from conveyor.api.errors import install_error_handlers
from conveyor.api.routes import hooks, notifications, session, tasks, workflow_tasks
from conveyor.api.schemas import CreateTaskIn, ErrorOut, ReadinessOut, SessionIn
from conveyor.domain.errors import AuthFailed
from conveyor.log_format import request_id
from conveyor.metrics import CONTENT_TYPE, Metrics
from conveyor.settings import resolve_secret
from conveyor.web import routes as web_routes
from conveyor.wiring import Container

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID if sane) for logs and errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.set(rid)  # every log line of this request carries it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Counts and times every request by its route's template (never its raw path, which
    would make a series per task id), method and status."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            # Any word is a method to the HTTP parser: only HTTP's own make a series.
            method = scope["method"] if scope["method"] in _METHODS else "other"
            took = time.perf_counter() - started
            self.metrics().http(template, method, status, took)


class HeadAsGetMiddleware:
    """HEAD is GET without the body (RFC 9110 9.3.2), which FastAPI's routes do not
    answer on their own. The server sees its own scope still saying HEAD and sends no
    body; the route sees GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


def create_app(container: Container) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        container.start()
        try:
            yield
        finally:
            if container.async_reads is not None:
                await container.async_reads.close()
            container.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Conveyor",
        summary="CI/CD workflow tasks: build services from branches or merge requests, "
        "deploy them into environments.",
        version="0.1.0",
        # Served below from Conveyor's own files: FastAPI's pages load theirs from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.container = container
    app.include_router(workflow_tasks.router)
    app.include_router(tasks.router)
    app.include_router(hooks.router)
    app.include_router(notifications.router)
    app.include_router(session.router)
    app.include_router(web_routes.router)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Conveyor API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Conveyor API",
            redoc_js_url="/static/vendor/redoc.standalone.js",
            redoc_favicon_url="/favicon.ico",
            with_google_fonts=False,
        )

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers HTTP")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database answers, at the newest schema; the broker answers",
        response_model=ReadinessOut,
        responses={503: {"model": ReadinessOut, "description": "what is not ready, and why"}},
    )
    async def readyz() -> JSONResponse:
        checks = await run_in_threadpool(container.readiness)
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics (docs/operations.md); with `metrics_token`, only for it",
        response_class=PlainTextResponse,
        responses={
            200: {"description": "the Prometheus text format", "content": {"text/plain": {}}},
            **error_responses(401, 500, 503),
        },
        # Open unless the config sets a metrics_token: `{}` is OpenAPI's "no auth" choice.
        openapi_extra={"security": [{"metrics-token": []}, {}]},
    )
    async def metrics(request: Request) -> Response:
        configured = container.config.metrics_token
        if configured is not None:
            # A token from an unset variable guards as closed, never as open.
            wanted = resolve_secret(configured)
            given = request.headers.get("authorization", "")
            if not wanted or not hmac.compare_digest(given.encode(), f"Bearer {wanted}".encode()):
                raise AuthFailed("metrics: send Authorization: Bearer <metrics_token>")
        body = await run_in_threadpool(container.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=lambda: container.metrics)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RequestIdMiddleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            # Models the routes read or answer with themselves (docs/adr/0002).
            for model in (CreateTaskIn, ErrorOut, SessionIn):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(body.pop("$defs", {}))
                schemas[model.__name__] = body
            components["securitySchemes"] = {
                **SECURITY_SCHEMES,
                "gitlab-token": GITLAB_TOKEN_SCHEME,
                "metrics-token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the config's metrics_token, when one is set",
                },
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
