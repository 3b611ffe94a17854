"""The server's API as a client sees it, and the exit codes a script can rely on."""

import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx

# Exit codes of the `conveyor task …` commands (docs/cli.md).
PASSED, FAILED, CANCELLED, USAGE, AUTH = 0, 1, 2, 3, 4
TERMINAL = ("passed", "failed", "timeout", "cancelled")
TASKS = "/api/directory/workflowTask"


def exit_code(status: str) -> int:
    """A task's status as the exit code of `wait` and `run --wait`."""
    return {"passed": PASSED, "cancelled": CANCELLED}.get(status, FAILED)


class ClientError(Exception):
    """What went wrong, in one line, and the exit code it deserves."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


# Answers worth asking again while following a task: the server restarting, a proxy
# in front of it, the database away for a moment (503 with Retry-After).
_TRANSIENT = (502, 503, 504)
PATIENCE_S = 120


class Api:
    def __init__(self, url: str, token: str, timeout_s: float = 30) -> None:
        if not token.isascii() or not token.isprintable():
            raise ClientError("the token has characters no token has (a stray newline?)", AUTH)
        self.url = url
        self._token = token
        self.patient = False
        """Set while following a task: GETs ride out a server restart (up to PATIENCE_S)."""
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "conveyor-cli"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + (PATIENCE_S if self.patient and method == "GET" else 0)
        wait = 1.0
        while True:
            try:
                r: httpx.Response | None = self._http.request(method, path, **kwargs)
                failure = None
            except httpx.HTTPError as exc:
                r, failure = None, exc
            transient = r is None or r.status_code in _TRANSIENT
            if not transient or time.monotonic() >= deadline:
                break
            time.sleep(wait)
            wait = min(wait * 2, 5)
        if r is None:
            # The transport's words, never the request's headers (the token).
            why = str(failure).replace(self._token, "***")
            raise ClientError(f"cannot reach {self.url}: {why}", USAGE) from None
        if r.status_code < 300:
            return r
        try:
            body = r.json()
            why = f"{body['errorMsg']}: {body['detail']}"
        except (ValueError, KeyError, TypeError):
            why = r.text[:200].strip() or r.reason_phrase
        code = AUTH if r.status_code in (401, 403) else USAGE
        raise ClientError(f"{method} {path}: {r.status_code} {why}", code)

    def _json(self, r: httpx.Response) -> Any:
        try:
            return r.json()
        except ValueError:
            # A proxy's login page, say: not the server's API.
            raise ClientError(
                f"{r.request.method} {r.request.url.path}: {r.status_code} is not the API's "
                f"JSON ({r.headers.get('content-type', 'no content type')}); is {self.url} "
                "a Conveyor server?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        given = {k: v for k, v in params.items() if v is not None}
        return self._json(self._send("GET", path, params=given))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._json(self._send("POST", path, json=body))

    def task(self, workflow: str, task_id: int, wait_s: int = 0) -> dict[str, Any]:
        """The task; with `wait_s`, once it has ended or after that many seconds."""
        url = f"/api/workflows/{workflow}/tasks/{task_id}"
        if not wait_s:
            found: dict[str, Any] = self.get(url)
            return found
        asked = time.monotonic()
        found = self.get(url, wait=str(wait_s))
        if found["status"] not in TERMINAL:
            # A server from before `wait` answers at once: do not ask it in a tight loop.
            time.sleep(max(0.0, wait_s - (time.monotonic() - asked)))
        return found

    def log_pieces(self, log_url: str, offset: int = 0) -> Iterator[tuple[bytes, int, bool]]:
        """The log from `offset`, a piece at a time: (bytes, next offset, complete)."""
        while True:
            r = self._send("GET", log_url, params={"offset": str(offset)})
            try:
                offset = int(r.headers["X-Next-Offset"])
            except (KeyError, ValueError):
                raise ClientError(f"GET {log_url}: no X-Next-Offset: not a Conveyor log") from None
            complete = r.headers.get("X-Log-Complete") == "true"
            yield r.content, offset, complete
            if complete:
                return
