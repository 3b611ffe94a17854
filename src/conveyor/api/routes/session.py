"""Sign-in for pages: a token exchanged once for an HttpOnly, SameSite=Strict session
cookie; the API keeps taking tokens in headers."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from conveyor.api.body import check_json_document, read_body, require_json_media_type
from conveyor.api.deps import SESSION_COOKIE, container, error_responses
from conveyor.api.errors import describe_validation_errors
from conveyor.api.schemas import SessionIn, SessionOut
from conveyor.domain.errors import InvalidParam
from conveyor.domain.principals import SessionInfo

router = APIRouter(prefix="/api/session", tags=["session"])


def _body(found: SessionInfo) -> dict[str, object]:
    return {
        "user": found.token.user,
        "roles": list(found.token.roles),
        "expire_time": found.expire_time,
        "csrf_token": found.csrf,
    }


@router.post(
    "",
    response_model=SessionOut,
    responses=error_responses(400, 401, 413, 415, 500, 503),
    summary="Sign in: exchange a token for a session cookie (for pages)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SessionIn"}}},
        }
    },
)
async def sign_in(request: Request) -> JSONResponse:
    c = container(request)
    require_json_media_type(request.headers.get("content-type"))
    raw = await read_body(request, 4096)
    check_json_document(raw)
    try:
        given = SessionIn.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidParam(describe_validation_errors(exc.errors())) from exc
    cookie, found, lasts_s = c.tokens.open_session(given.token)
    answer = JSONResponse(_body(found))
    answer.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=lasts_s,
        httponly=True,
        samesite="strict",
        secure=c.config.public_url.startswith("https://"),
        path="/",
    )
    return answer


@router.get(
    "",
    response_model=SessionOut,
    responses={
        204: {"description": "this browser has no session: sign in"},
        **error_responses(401, 500, 503),
    },
    summary="The session this browser is signed in with",
    description="204 when the browser holds no session cookie; 401 says why the one it "
    "holds no longer works (expired, revoked, ended).",
)
def current_session(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        # Not an error: a page asks this first, before it knows whether to show the form.
        return Response(status_code=204)
    found, _ = container(request).tokens.session(cookie)
    return JSONResponse(_body(found))


@router.delete(
    "",
    status_code=204,
    responses=error_responses(500, 503),
    summary="Sign out: end this browser's session",
)
def sign_out(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        container(request).tokens.close_session(cookie)
    answer = Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer
