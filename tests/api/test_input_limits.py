"""Bad input to POST .../create is a 4xx naming what is wrong, and is never stored:
limits on the body, its fields and its JSON (docs/api.md, docs/adr/0009)."""

import http.client
import json
from collections.abc import Callable
from contextlib import closing
from typing import Any

import anyio
import httpx2 as httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.types import Message, Scope

from conveyor.storage.tables import tasks
from conveyor.wiring import Container
from tests.api.conftest import LiveServer
from tests.api.test_create import count_rows
from tests.fixtures import WF, Headers, create_body

URL = "/api/directory/workflowTask/create"
MIB = 1024 * 1024
ERROR_MESSAGES = {
    400: "param is illegal!",
    401: "auth failed!",
    413: "request body too large",
    415: "unsupported media type",
}


def detail_of(r: httpx.Response, status: int) -> str:
    """The detail of an error answer, once its status and documented shape are checked."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"resultCode", "errorMsg", "detail"}
    assert (body["resultCode"], body["errorMsg"]) == (status, ERROR_MESSAGES[status])
    detail: str = body["detail"]
    return detail


def assert_nothing_stored(client: TestClient, admin: Headers, container: Container) -> None:
    """No task row was written and no task id was used: the next valid create gets id 1.
    (The audit log holds the test token's creation, and nothing else.)"""
    rows = count_rows(container)
    assert rows.pop("audit_log") == 1
    assert set(rows.values()) == {0}
    r = client.post(URL, json=create_body(), headers=admin)
    assert r.json() == {"workflow_name": WF, "task_id": 1}


def post_raw(
    client: TestClient, admin: Headers, raw: bytes | str, content_type: str = "application/json"
) -> httpx.Response:
    return client.post(URL, content=raw, headers={**admin, "Content-Type": content_type})


def padded(body: dict[str, object], size: int) -> bytes:
    """`body` as JSON, padded with trailing whitespace (still JSON) to `size` bytes."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def one_target(**target: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "redis3",
        "build": {"repos": [{"repo_name": "voting-app", "branch": "master"}]},
    }
    return create_body(targets=[{**base, **target}])


def with_env_values(*values: str) -> dict[str, object]:
    keys = ("FLAVOUR", "SIZE", "MODE")
    return one_target(envs=[{"key": k, "value": v} for k, v in zip(keys, values, strict=False)])


def stored_envs(container: Container) -> list[list[str]]:
    with container.db.read() as conn:
        spec = conn.execute(sa.select(tasks.c.spec)).scalar_one()
    envs: list[list[str]] = spec["targets"][0]["envs"]
    return envs


# -- the size of the body -------------------------------------------------------------


def test_a_body_of_exactly_1_mib_is_read(client: TestClient, admin: Headers) -> None:
    r = post_raw(client, admin, padded(create_body(), MIB))
    assert r.json() == {"workflow_name": WF, "task_id": 1}


def test_a_body_over_1_mib_is_413_and_nothing_is_stored(
    client: TestClient, admin: Headers, container: Container
) -> None:
    r = post_raw(client, admin, padded(create_body(), MIB + 1))
    assert detail_of(r, 413) == f"body: {MIB + 1} bytes; at most {MIB} are accepted"
    assert_nothing_stored(client, admin, container)


def test_a_50_mb_env_value_is_413_not_stored(
    client: TestClient, admin: Headers, container: Container
) -> None:
    r = client.post(URL, json=with_env_values("x" * 50_000_000), headers=admin)
    assert detail_of(r, 413).startswith("body: ")
    assert_nothing_stored(client, admin, container)


def test_a_chunked_body_is_refused_once_past_1_mib_and_the_rest_is_not_read(
    client: TestClient, admin: Headers
) -> None:
    """Driven at the ASGI level, where every byte the endpoint pulls can be counted: a
    client that declares no length and streams 8 MiB gets 413 after about 1 MiB."""
    chunk = b" " * 65536
    offered = 8 * MIB
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < offered}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", admin["Authorization"].encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(client.app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["resultCode"] == 413
    assert pulled <= MIB + len(chunk)


def test_a_chunked_body_over_1_mib_is_413_over_http(
    live_server: LiveServer, admin: Headers
) -> None:
    def stream() -> Any:
        for _ in range(40):
            yield b" " * 65536  # 2.5 MiB, with no Content-Length

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        r = http.post(URL, content=stream(), headers=admin)
        assert "content-length" not in r.request.headers
        assert detail_of(r, 413) == f"body: more than {MIB} bytes; at most {MIB} are accepted"
        assert http.post(URL, json=create_body(), headers=admin).json()["task_id"] == 1


# -- fields ---------------------------------------------------------------------------

Body = Callable[[int], dict[str, object]]
FIELD_LIMITS: list[tuple[str, Body, int, str]] = [
    ("workflow_name", lambda n: create_body(workflow_name="w" * n), 200, "characters"),
    ("env_name", lambda n: create_body(env_name="e" * n), 200, "characters"),
    ("targets[0].name", lambda n: one_target(name="s" * n), 200, "characters"),
    (
        "targets[0].build.repos[0].repo_name",
        lambda n: one_target(build={"repos": [{"repo_name": "r" * n, "branch": "master"}]}),
        200,
        "characters",
    ),
    (
        "targets[0].build.repos[0].branch",
        lambda n: one_target(build={"repos": [{"repo_name": "voting-app", "branch": "b" * n}]}),
        255,
        "characters",
    ),
    (
        "targets[0].envs[0].key",
        lambda n: one_target(envs=[{"key": "K" * n, "value": "1"}]),
        128,
        "characters",
    ),
    (
        "targets",
        lambda n: create_body(targets=[{"name": "web", "build": {"repos": []}}] * n),
        100,
        "items",
    ),
    (
        "targets[0].build.repos",
        lambda n: one_target(build={"repos": [{"repo_name": "dyliu", "branch": "main"}] * n}),
        50,
        "items",
    ),
    (
        "targets[0].envs",
        lambda n: one_target(envs=[{"key": "FLAVOUR", "value": "1"}] * n),
        100,
        "items",
    ),
]


@pytest.mark.parametrize(
    ("where", "body", "limit", "unit"), FIELD_LIMITS, ids=[f[0] for f in FIELD_LIMITS]
)
def test_every_field_has_a_limit_named_in_the_400(
    client: TestClient,
    admin: Headers,
    container: Container,
    where: str,
    body: Body,
    limit: int,
    unit: str,
) -> None:
    too_long = f"{where}: " + ("String" if unit == "characters" else "List")
    too_long += f" should have at most {limit} {unit}"
    over = detail_of(client.post(URL, json=body(limit + 1), headers=admin), 400)
    assert over.startswith(too_long), over
    assert_nothing_stored(client, admin, container)
    # At the limit the value passes this check (and may fail a later one: it names
    # nothing configured, or is given twice).
    r = client.post(URL, json=body(limit), headers=admin)
    assert r.status_code == 200 or "should have at most" not in detail_of(r, 400)


def test_a_131072_character_branch_is_400_and_the_connection_goes_on(
    live_server: LiveServer, admin: Headers, container: Container
) -> None:
    """It once reached `git ls-remote` (E2BIG: 500) and the connection was reset."""
    conn = http.client.HTTPConnection(live_server.host, live_server.port, timeout=30)
    headers = {**admin, "Content-Type": "application/json"}

    def post(body: dict[str, object]) -> tuple[int, dict[str, object]]:
        conn.request("POST", URL, body=json.dumps(body), headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    huge = {"repo_name": "dyliu", "branch": "a" * 131_072}
    with closing(conn):
        status, body = post(create_body(targets=[{"name": "web", "build": {"repos": [huge]}}]))
        assert status == 400
        assert body["detail"] == (
            "targets[0].build.repos[0].branch: String should have at most 255 characters"
        )
        socket_used = conn.sock
        assert post(create_body()) == (200, {"workflow_name": WF, "task_id": 1})
        assert conn.sock is socket_used  # the same keep-alive connection answered
    assert count_rows(container)["tasks"] == 1


# -- env values: at most 4 KiB of text --------------------------------------------------


def test_an_env_value_of_4096_bytes_with_a_tab_is_stored_as_sent(
    client: TestClient, admin: Headers, container: Container
) -> None:
    value = "\t" + "é" * 2047 + "a"  # 1 + 4094 + 1 bytes of UTF-8
    emoji = "\U0001f600"  # a surrogate pair in JSON, which is fine
    r = client.post(URL, json=with_env_values(value, emoji), headers=admin)
    assert r.status_code == 200, r.text
    assert stored_envs(container)[:2] == [["FLAVOUR", value], ["SIZE", emoji]]


def test_an_env_value_over_4096_bytes_is_400(
    client: TestClient, admin: Headers, container: Container
) -> None:
    r = client.post(URL, json=with_env_values("é" * 2048 + "a"), headers=admin)
    assert (
        detail_of(r, 400)
        == "targets[0].envs[0].value: must be at most 4096 bytes of UTF-8, not 4097"
    )
    assert_nothing_stored(client, admin, container)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\x00b", "'\\x00' at 1"),
        ("line\nbreak", "'\\n' at 4"),
        ("cr\r", "'\\r' at 2"),
        ("\x1b[31mred", "'\\x1b' at 0"),
        ("del\x7f", "'\\x7f' at 3"),
        ("c1\x85", "'\\x85' at 2"),
    ],
)
def test_an_env_value_with_a_control_character_is_400_naming_it(
    client: TestClient, admin: Headers, container: Container, value: str, shown: str
) -> None:
    r = client.post(URL, json=with_env_values("fine", value), headers=admin)
    assert detail_of(r, 400) == (
        f"targets[0].envs[1].value: must not hold control characters other than tab; found {shown}"
    )
    assert_nothing_stored(client, admin, container)


# -- JSON the model would not notice ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (create_body(workflow_name="\ud800"), "workflow_name: holds a lone surrogate"),
        (
            one_target(build={"repos": [{"repo_name": "voting-app", "branch": "m\udfffx"}]}),
            "targets[0].build.repos[0].branch: holds a lone surrogate",
        ),
        (with_env_values("ok", "\udc00\ud800"), "targets[0].envs[1].value: holds a lone surrogate"),
        (create_body(**{"\ud83d": 1}), "body: key '\\ud83d' is not valid Unicode"),
    ],
    ids=["workflow_name", "branch", "reversed pair in a value", "key"],
)
def test_a_lone_surrogate_anywhere_is_400_naming_where(
    client: TestClient, admin: Headers, container: Container, body: object, detail: str
) -> None:
    raw = json.dumps(body)  # ensure_ascii writes each surrogate as a \ud8xx escape
    assert "\\ud" in raw
    assert detail_of(post_raw(client, admin, raw), 400) == detail
    assert_nothing_stored(client, admin, container)


@pytest.mark.parametrize(
    ("original", "doubled", "detail"),
    [
        ('"env_name": "dev"', '"env_name": "dev", "env_name": "prod"', "body: key 'env_name'"),
        (
            '"branch": "master"',
            '"branch": "master", "branch": "nope"',
            "targets[0].build.repos[0]: key 'branch'",
        ),
    ],
    ids=["top level", "nested"],
)
def test_a_key_given_twice_is_400_naming_it(
    client: TestClient,
    admin: Headers,
    container: Container,
    original: str,
    doubled: str,
    detail: str,
) -> None:
    raw = json.dumps(create_body())
    assert original in raw
    r = post_raw(client, admin, raw.replace(original, doubled))
    assert detail_of(r, 400) == f"{detail} given twice"
    assert_nothing_stored(client, admin, container)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"workflow_name": NaN}', "body: NaN is not JSON"),
        (b'{"workflow_name": "\xff"}', "body: not UTF-8 (byte 19)"),
        (b"[" * 2000 + b"]" * 2000, "body: nested deeper than 32 levels"),
        (b"[" * 40 + b"]" * 40, "[0]" * 32 + ": nested too deeply"),
        (b"\xef\xbb\xbf{}", "body: Unexpected UTF-8 BOM"),
    ],
    ids=["NaN", "not UTF-8", "deep beyond recursion", "deep", "BOM"],
)
def test_what_is_not_plain_json_is_400(
    client: TestClient, admin: Headers, container: Container, raw: bytes, detail: str
) -> None:
    assert detail_of(post_raw(client, admin, raw), 400).startswith(detail)
    assert_nothing_stored(client, admin, container)


def test_a_body_with_many_errors_gets_a_short_detail(client: TestClient, admin: Headers) -> None:
    r = client.post(URL, json=one_target(build={"repos": [7] * 50}), headers=admin)
    detail = detail_of(r, 400)
    assert detail.count("Input should be") == 10
    assert detail.endswith("; and 40 more")


# -- the media type -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/merge-patch+json",
        "application/json; charset=latin-1",
        "",
    ],
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient, admin: Headers, container: Container, content_type: str
) -> None:
    r = post_raw(client, admin, json.dumps(create_body()), content_type)
    assert detail_of(r, 415).startswith(f"Content-Type {content_type!r}: ")
    assert_nothing_stored(client, admin, container)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON;charset="UTF-8"',
    ],
)
def test_json_with_or_without_a_content_type_is_read(
    client: TestClient, admin: Headers, content_type: str | None
) -> None:
    headers = {**admin} if content_type is None else {**admin, "Content-Type": content_type}
    r = client.post(URL, content=json.dumps(create_body()), headers=headers)
    assert "content-type" not in r.request.headers or content_type is not None
    assert r.json() == {"workflow_name": WF, "task_id": 1}


def test_the_media_type_is_checked_before_the_size(client: TestClient, admin: Headers) -> None:
    r = post_raw(client, admin, padded(create_body(), 2 * MIB), "text/plain")
    assert r.status_code == 415


# -- authentication first (docs/adr/0002) -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (padded(create_body(), 2 * MIB), "application/json"),
        (json.dumps(create_body()), "text/plain"),
        ('{"a": 1, "a": 2}', "application/json"),
        ('{"a": "\\ud800"}', "application/json"),
        (json.dumps(create_body(workflow_name="w" * 1000)), "application/json"),
    ],
    ids=["too large", "not json", "key twice", "lone surrogate", "name too long"],
)
def test_without_a_token_any_bad_body_is_401(
    client: TestClient, raw: bytes | str, content_type: str
) -> None:
    r = client.post(URL, content=raw, headers={"Content-Type": content_type})
    assert detail_of(r, 401) == "no Authorization header"
