"""A real HTTP server that plays GitLab's commit statuses endpoint (and any webhook
receiver): it records every request and answers as a test tells it to."""

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int = 201
    body: str = '{"id": 1}'
    headers: tuple[tuple[str, str], ...] = ()
    hang: threading.Event | None = None
    """Hold the request until this is set (a GitLab that does not answer)."""


Responder = Callable[[Received], Answer]


class FakeGitlab:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answered: list[tuple[Received, int]] = []
        self.responder: Responder = lambda _r: Answer()
        self._changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                got = Received(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )  # fmt: skip
                with outer._changed:
                    outer.received.append(got)
                    outer._changed.notify_all()
                answer = outer.responder(got)
                if answer.hang is not None:
                    answer.hang.wait(30)
                body = answer.body.encode()
                # Recorded before the answer leaves, so a test that saw the client get
                # it sees it here too.
                with outer._changed:
                    outer.answered.append((got, answer.status))
                    outer._changed.notify_all()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in answer.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def statuses(self, sha: str | None = None) -> list[dict[str, Any]]:
        """The bodies of the commit statuses GitLab accepted (2xx), in arrival order."""
        with self._changed:
            return [
                {**r.json, "sha": r.path.rsplit("/", 1)[1]}
                for r, status in self.answered
                if "/statuses/" in r.path
                and 200 <= status < 300
                and (sha is None or r.path.endswith(sha))
            ]

    def wait_for(self, what: Callable[[], bool], timeout: float = 30) -> None:
        """Until `what()` holds, re-checked on every request (no polling sleep)."""
        with self._changed:
            if not self._changed.wait_for(what, timeout):
                pytest.fail(f"fake GitLab: still not true after {timeout}s; got {self.received}")


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitlab]:
    """A fake GitLab on 127.0.0.1 and a free port, stopped after the test."""
    gitlab = FakeGitlab()
    gitlab.start()
    yield gitlab
    gitlab.stop()
