"""The server's API as a client sees it, and the exit codes a script can rely on."""

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


class Api:
    def __init__(self, url: str, token: str, timeout_s: float = 30) -> None:
        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "conveyor-cli"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}", USAGE) from None
        if r.status_code < 400:
            return r
        try:
            body = r.json()
            why = f"{body.get('errorMsg')}: {body.get('detail')}"
        except ValueError:
            why = r.text[:200] or r.reason_phrase
        code = AUTH if r.status_code in (401, 403) else USAGE
        raise ClientError(f"{method} {path}: {r.status_code} {why}", code)

    def get(self, path: str, **params: Any) -> Any:
        given = {k: v for k, v in params.items() if v is not None}
        return self._send("GET", path, params=given).json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._send("POST", path, json=body).json()

    def task(self, workflow: str, task_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/api/workflows/{workflow}/tasks/{task_id}")
        return found

    def log_pieces(self, log_url: str, offset: int = 0) -> Iterator[tuple[bytes, int, bool]]:
        """The log from `offset`, a piece at a time: (bytes, next offset, complete)."""
        while True:
            r = self._send("GET", log_url, params={"offset": str(offset)})
            offset = int(r.headers["X-Next-Offset"])
            complete = r.headers["X-Log-Complete"] == "true"
            yield r.content, offset, complete
            if complete:
                return
