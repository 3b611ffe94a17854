"""The web UI's pages: static shells that hold no data. Each page's script reads the
JSON API with the session a person's token was exchanged for (tokens never travel in
URLs), so a page can show only what its viewer may see through the API."""

from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_WEB = resources.files("conveyor.web")
_STATIC = _WEB / "static"
_TYPES = {
    "common.js": "text/javascript",
    "ansi.js": "text/javascript",
    "home.js": "text/javascript",
    "workflow.js": "text/javascript",
    "run.js": "text/javascript",
    "task.js": "text/javascript",
    "log.js": "text/javascript",
    "ui.css": "text/css",
    "favicon.png": "image/png",
    # Swagger UI and ReDoc, pinned and served here, never from a CDN (vendor/README.md).
    "vendor/swagger-ui-bundle.js": "text/javascript",
    "vendor/swagger-ui.css": "text/css",
    "vendor/redoc.standalone.js": "text/javascript",
}
# Only this origin's own files run; nothing inline, nothing from elsewhere.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@cache
def page(body: str, *scripts: str) -> bytes:
    """The layout (header, sign-in form, connection banner) around pages/<body>.html."""
    layout = (_WEB / "pages" / "layout.html").read_text()
    tags = "\n".join(f'  <script src="/static/{s}" defer></script>' for s in scripts)
    html = layout.replace("  <!-- scripts -->", tags).replace(
        "<!-- body -->\n", (_WEB / "pages" / f"{body}.html").read_text()
    )
    return html.encode()


def _html(content: bytes, status: int = 200) -> Response:
    return Response(content, status, media_type="text/html; charset=utf-8", headers=HEADERS)


def not_found_page() -> Response:
    return _html(page("404"), 404)


@router.get("/")
def home_page() -> Response:
    return _html(page("home", "home.js"))


@router.get("/workflows/{name}")
def workflow_page(name: str) -> Response:
    return _html(page("workflow", "workflow.js"))


@router.get("/workflows/{name}/run")
def run_page(name: str) -> Response:
    return _html(page("run", "run.js"))


# Ids are digits: any other address is the HTML 404, not a page that cannot load.
@router.get("/workflows/{name}/tasks/{id:int}")
def task_page(name: str, id: int) -> Response:
    return _html(page("task", "task.js"))


@router.get("/workflows/{name}/tasks/{id:int}/jobs/{job:int}")
def log_page(name: str, id: int, job: int) -> Response:
    return _html(page("log", "ansi.js", "log.js"))


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((_STATIC / "favicon.png").read_bytes(), media_type="image/png")


@router.get("/static/{file:path}")
def static_file(file: str) -> Response:
    if file not in _TYPES:
        raise HTTPException(404)  # the JSON 404 every unknown path gets
    return Response((_STATIC / file).read_bytes(), media_type=_TYPES[file], headers=HEADERS)
