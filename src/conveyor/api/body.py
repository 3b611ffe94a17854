"""Reading a JSON request body: its media type, its size, and JSON without surprises.

Each check runs after authentication (docs/adr/0002) and before the body is validated
against its model; docs/adr/0009 says why each limit is what it is.
"""

import json
from typing import Any

from fastapi import Request

from conveyor.api.errors import BodyTooLarge, UnsupportedMediaType
from conveyor.domain.errors import InvalidParam
from conveyor.settings import format_loc

MAX_BODY_BYTES = 1024 * 1024
# The create body is six levels deep; anything far deeper is not a create body, and
# walking it must not exhaust the stack.
MAX_DEPTH = 32


def require_json_media_type(content_type: str | None) -> None:
    """A body is JSON if it says so, or says nothing (clients of the original API often
    send no Content-Type). `application/*+json` is refused: those types mean more than
    JSON (a merge patch, JSON:API), and this endpoint implements none of it."""
    if content_type is None:
        return
    media_type, *params = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        raise UnsupportedMediaType(f"Content-Type {content_type!r}: send application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType(f"Content-Type {content_type!r}: JSON is read as UTF-8")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, but never more than `limit` bytes of it in memory: a declared length
    above the limit is refused unread, and a chunked body is counted as it arrives."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body: {declared} bytes; at most {limit} are accepted")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(f"body: more than {limit} bytes; at most {limit} are accepted")
        body += chunk
    return bytes(body)


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in order, before duplicates are checked."""


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def check_json_document(raw: bytes) -> None:
    """Refuse what a JSON model validator would pass over silently: a key given twice
    (the last would win), a string holding a lone surrogate (no UTF-8 can carry it to
    git or the database), NaN or Infinity, and nesting too deep to walk."""
    try:
        text = raw.decode("utf-8")
        document = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_not_json)
    except UnicodeDecodeError as exc:
        raise InvalidParam(f"body: not UTF-8 (byte {exc.start})") from exc
    except RecursionError as exc:
        raise InvalidParam(f"body: nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise InvalidParam(f"body: {exc}") from exc
    _check_value(document, [])


def _check_value(value: object, loc: list[int | str]) -> None:
    if len(loc) > MAX_DEPTH:
        raise InvalidParam(f"{format_loc(loc[:MAX_DEPTH]) or 'body'}: nested too deeply")
    if isinstance(value, str):
        _check_text(value, loc)
    elif isinstance(value, _Pairs):
        _check_object(value, loc)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, [*loc, i])


def _check_object(pairs: _Pairs, loc: list[int | str]) -> None:
    seen: set[str] = set()
    for key, item in pairs:
        where = format_loc(loc) or "body"
        if _has_surrogate(key):
            raise InvalidParam(f"{where}: key {key!r} is not valid Unicode")
        if key in seen:
            raise InvalidParam(f"{where}: key {key!r} given twice")
        seen.add(key)
        _check_value(item, [*loc, key])


def _check_text(text: str, loc: list[int | str]) -> None:
    if _has_surrogate(text):
        raise InvalidParam(f"{format_loc(loc) or 'body'}: holds a lone surrogate")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")  # only a surrogate cannot be encoded
    except UnicodeEncodeError:
        return True
    return False
