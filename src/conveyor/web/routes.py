"""GET /workflows/{name}/tasks/{id}: the page a task's `url` points at.

The page is the same for every task and holds no data: its script reads the task
through the JSON API with the token the person gives it (tokens never travel in URLs).
"""

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

_STATIC = resources.files("conveyor.web") / "static"
_TYPES = {
    "task.js": "text/javascript",
    "task.css": "text/css",
    "favicon.png": "image/png",
    # Swagger UI and ReDoc, pinned and served here, never from a CDN (vendor/README.md).
    "vendor/swagger-ui-bundle.js": "text/javascript",
    "vendor/swagger-ui.css": "text/css",
    "vendor/redoc.standalone.js": "text/javascript",
}
# Only this origin's own files run; nothing inline, nothing from elsewhere.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/workflows/{name}/tasks/{id}")
def task_page(name: str, id: str) -> Response:
    html = (_STATIC / "task.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((_STATIC / "favicon.png").read_bytes(), media_type="image/png")


@router.get("/static/{file:path}")
def static_file(file: str) -> Response:
    if file not in _TYPES:
        raise HTTPException(404)  # the JSON 404 every unknown path gets
    return Response((_STATIC / file).read_bytes(), media_type=_TYPES[file], headers=_HEADERS)
