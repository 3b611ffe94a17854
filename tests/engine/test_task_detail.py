"""GET /api/workflows/{name}/tasks/{id} and .../jobs/{job}/log"""

import time

import pytest

from conveyor.wiring import Container
from tests.engine.conftest import Engine


def test_detail_shows_jobs_times_commits_and_attempts(engine: Engine) -> None:
    task = engine.create(api="", web="flaky")
    engine.wait(task)
    assert engine.act("restart", task) == 200
    engine.wait(task)
    r = engine.client.get(f"/api/workflows/serial/tasks/{task}", headers=engine.headers)
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["attempt"], body["created_by"]) == ("passed", 2, "alice")
    assert body["url"] == f"http://conveyor.test/workflows/serial/tasks/{task}"
    assert [c["commit"] for c in body["commits"]] == [engine.repo.head("main")] * 2
    assert [a["number"] for a in body["attempts"]] == [1, 2]
    failed = [j for j in body["jobs"] if j["status"] == "failed"]
    assert [(j["attempt"], j["stage"], j["service"], j["exit_code"]) for j in failed] == [
        (1, "build", "web", 1)
    ]
    assert failed[0]["detail"] == "script exited with 1"
    for job in body["jobs"]:
        if job["status"] == "passed":
            assert job["start_time"] <= job["end_time"]
            log = engine.client.get(job["log_url"], headers=engine.headers)
            assert log.status_code == 200
            assert log.headers["X-Log-Complete"] == "true"
            assert f"{job['stage']} passed" in log.text


def test_a_running_log_can_be_followed_by_offset(engine: Engine) -> None:
    task = engine.create(api="sleep")
    engine.wait_for_pids(task)
    detail = engine.client.get(f"/api/workflows/serial/tasks/{task}", headers=engine.headers).json()
    [build] = [j for j in detail["jobs"] if j["stage"] == "build"]
    first = engine.client.get(build["log_url"], headers=engine.headers)
    assert first.headers["X-Job-Status"] == "running"
    assert first.headers["X-Log-Complete"] == "false"
    assert "build api attempt 1" in first.text
    offset = int(first.headers["X-Next-Offset"])
    assert offset == len(first.content)
    assert engine.act("cancel", task) == 200
    engine.wait(task, {"cancelled"})
    collected = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = engine.client.get(
            build["log_url"], params={"offset": str(offset)}, headers=engine.headers
        )
        collected += r.content
        offset = int(r.headers["X-Next-Offset"])
        if r.headers["X-Log-Complete"] == "true":
            break
    # Only what came after the first read, and to its end.
    assert b"build api attempt 1" not in collected
    assert b"build cancelled: cancelled" in collected


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/api/workflows/serial/tasks/99", 404, "no task 99 in workflow 'serial'"),
        ("/api/workflows/nope/tasks/1", 400, "name: unknown workflow 'nope'"),
        ("/api/workflows/serial/tasks/0", 400, "id: '0' is not a positive task id"),
        ("/api/workflows/serial/tasks/1/jobs/999/log", 404, "task serial#1 has no job 999"),
        ("/api/workflows/serial/tasks/1/jobs/x/log", 400, "job: 'x' is not a job id"),
        (
            "/api/workflows/serial/tasks/1/jobs/1/log?offset=-1",
            400,
            "offset: '-1' must be a whole number of bytes",
        ),
    ],
)
def test_errors(engine: Engine, path: str, status: int, detail: str) -> None:
    engine.create(api="")
    r = engine.client.get(path, headers=engine.headers)
    assert r.status_code == status
    assert r.json()["detail"] == detail


def test_viewing_needs_a_token_and_task_view(engine: Engine) -> None:
    engine.create(api="")
    assert engine.client.get("/api/workflows/serial/tasks/1").status_code == 401
    container: Container = engine.container
    token, _ = container.tokens.issue("bob", ["creator"], None)
    r = engine.client.get(
        "/api/workflows/serial/tasks/1", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403
    assert r.json()["detail"] == "user 'bob' lacks task:view on workflow 'serial'"


def test_the_log_api_masks_secrets_the_writer_did_not_know(engine: Engine) -> None:
    """A log written unmasked (by a worker whose config lacked the secret, or before it
    was added) is masked when served, whatever window the reader asks for."""
    task = engine.create(api="")
    engine.wait(task)
    build = engine.jobs(task)[0]
    with engine.paths.log(build.id).open("ab") as log:
        log.write(b"leaked: hunter2-secret!\n")
    url = f"/api/workflows/serial/tasks/{task}/jobs/{build.id}/log"
    size = int(engine.client.get(url, headers=engine.headers).headers["X-Log-Size"])
    whole = engine.client.get(url, headers=engine.headers).text
    assert whole.endswith("leaked: ***!\n")
    for cut in range(size - 20, size - 5):
        first = engine.client.get(f"{url}?offset={cut - 30}", headers=engine.headers)
        rest = engine.client.get(
            f"{url}?offset={first.headers['X-Next-Offset']}", headers=engine.headers
        )
        assert "hunter2" not in first.text + rest.text


def test_a_long_log_reads_backwards_from_its_end_a_line_at_a_time(engine: Engine) -> None:
    """A page shows a long log's tail first: pieces that end where the last began, each
    from a line's start, with its first line's number; together, the whole log."""
    task = engine.create(api="")
    engine.wait(task)
    build = engine.jobs(task)[0]
    with engine.paths.log(build.id).open("ab") as log:
        for n in range(1, 3001):
            log.write(f"line {n}: €uro hunter2-secret\n".encode())
    url = f"/api/workflows/serial/tasks/{task}/jobs/{build.id}/log"
    whole = b"".join(engine.client.get(f"{url}/raw", headers=engine.headers).iter_bytes())
    assert whole.endswith(b"line 3000: \xe2\x82\xacuro ***\n")
    lines_total = whole.count(b"\n")
    stored = engine.paths.log(build.id).read_bytes()  # offsets count the stored bytes

    pieces: list[bytes] = []
    before = "end"
    while True:
        r = engine.client.get(f"{url}?before={before}&limit=4000", headers=engine.headers)
        assert r.status_code == 200
        start, line = int(r.headers["X-Log-Start"]), int(r.headers["X-Log-Line"])
        text = r.content.decode()  # from a line's start: no character cut in two
        assert "hunter2" not in text
        assert line == stored[:start].count(b"\n") + 1
        if before == "end":
            assert text.endswith("line 3000: €uro ***\n")
            assert line + text.count("\n") - 1 == lines_total
        pieces.insert(0, r.content)
        if start == 0:
            break
        before = str(start)
    assert len(pieces) > 10
    assert b"".join(pieces) == whole

    for query, detail in (
        ("before=1&offset=0", "before: give either offset or before, not both"),
        ("before=soon", "before: 'soon' must be a whole number of bytes or 'end'"),
        ("limit=1048577", "limit: 1048577 is more than 1048576 bytes"),
        ("limit=0", "limit: '0' must be a whole number of bytes"),
    ):
        r = engine.client.get(f"{url}?{query}", headers=engine.headers)
        assert (r.status_code, r.json()["detail"]) == (400, detail), query
    raw = engine.client.get(f"{url}/raw", headers=engine.headers)
    assert raw.headers["content-disposition"] == (
        f'attachment; filename="serial-{task}-build-api-1.log"; '
        f"filename*=UTF-8''serial-{task}-build-api-1.log"
    )
    for r in (raw, engine.client.get(url, headers=engine.headers)):
        assert r.headers["X-Content-Type-Options"] == "nosniff"  # never sniffed as a page
        assert r.headers["Content-Security-Policy"] == "sandbox"


def test_a_line_longer_than_the_piece_is_served_from_inside_it(engine: Engine) -> None:
    """A progress bar's one long line ends many logs: its tail is shown, not nothing, and
    reading on backwards makes progress."""
    task = engine.create(api="")
    engine.wait(task)
    build = engine.jobs(task)[0]
    with engine.paths.log(build.id).open("ab") as log:
        log.write(("é" * 150_000 + "\n").encode())  # 300 KB in one line
    stored = engine.paths.log(build.id).read_bytes()
    url = f"/api/workflows/serial/tasks/{task}/jobs/{build.id}/log"
    tail = engine.client.get(f"{url}?before=end&limit=4000", headers=engine.headers)
    assert tail.text == "é" * ((len(tail.content) - 1) // 2) + "\n"  # whole characters
    start = int(tail.headers["X-Log-Start"])
    assert int(tail.headers["X-Log-Line"]) == stored.count(b"\n")  # the last line's number
    earlier = engine.client.get(f"{url}?before={start}&limit=4000", headers=engine.headers)
    assert 0 < int(earlier.headers["X-Log-Start"]) < start
    assert earlier.content.decode() == "é" * (len(earlier.content) // 2)


def test_the_detail_says_which_buttons_would_work(engine: Engine) -> None:
    task = engine.create(api="sleep")
    engine.wait_for_pids(task)
    url = f"/api/workflows/serial/tasks/{task}"
    token, _ = engine.container.tokens.issue("vic", ["viewer"], None)
    viewer = {"Authorization": f"Bearer {token}"}

    def may(headers: dict[str, str]) -> tuple[bool, bool]:
        body = engine.client.get(url, headers=headers).json()
        return body["may_cancel"], body["may_restart"]

    assert may(engine.headers) == (True, False)
    assert may(viewer) == (False, False)
    assert engine.act("cancel", task) == 200
    engine.wait(task, {"cancelled"})
    assert may(engine.headers) == (False, True)
    assert may(viewer) == (False, False)
    body = engine.client.get(url, headers=engine.headers).json()
    assert body["attempts"][0]["status"] == "cancelled"
    assert abs(body["server_time"] - time.time()) < 5
