"""Posting notifications over HTTP with httpx2: GitLab commit statuses with the
token, webhook events signed with their endpoint's secret (docs/adr/0013)."""

import hashlib
import hmac
import time
from collections.abc import Mapping

import httpx2 as httpx

from conveyor.domain.notifications import GITLAB
from conveyor.domain.outbox import HttpAnswer, NoAnswer, OutboxEntry, Undeliverable

CONNECT_TIMEOUT_S = 5.0
TIMEOUT_S = 10.0
# However an endpoint trickles its answer, a request ends by then.
DEADLINE_S = 30.0
MAX_ANSWER_BYTES = 2000
USER_AGENT = "Conveyor/0.1"


def signature(secret: str, body: bytes) -> str:
    """X-Conveyor-Signature: HMAC-SHA256 of the exact body, as GitHub signs its hooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpPoster:
    def __init__(
        self,
        gitlab_api: str | None,
        gitlab_token: str | None,
        endpoint_secrets: Mapping[str, str | None],
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._api = gitlab_api
        self._token = gitlab_token
        self._secrets = dict(endpoint_secrets)
        self._deadline_s = max(DEADLINE_S, timeout_s)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def _headers(self, entry: OutboxEntry, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if entry.channel == GITLAB:
            # The token goes only where GitLab is now: a message written before
            # gitlab.url changed must not carry it to the old address.
            if not self._token or not self._api or not entry.url.startswith(self._api + "/"):
                raise Undeliverable("gitlab.url or gitlab.token changed since it was written")
            headers["PRIVATE-TOKEN"] = self._token
            return headers
        if entry.url not in self._secrets:
            raise Undeliverable("its URL is no longer one of the config's notifications")
        headers["X-Conveyor-Event"] = entry.event
        headers["X-Conveyor-Delivery"] = entry.delivery_id
        secret = self._secrets[entry.url]
        if secret:
            headers["X-Conveyor-Signature"] = signature(secret, body)
        return headers

    def post(self, entry: OutboxEntry) -> HttpAnswer:
        body = entry.body.encode()
        headers = self._headers(entry, body)
        start = time.monotonic()
        try:
            with self._client.stream("POST", entry.url, content=body, headers=headers) as answer:
                kept = bytearray()
                for chunk in answer.iter_bytes():
                    kept += chunk
                    if len(kept) >= MAX_ANSWER_BYTES:
                        break
                    if time.monotonic() - start > self._deadline_s:
                        raise NoAnswer(f"the answer took longer than {self._deadline_s:.0f}s")
                text = bytes(kept[:MAX_ANSWER_BYTES]).decode("utf-8", "replace")
                return HttpAnswer(answer.status_code, dict(answer.headers), text)
        except httpx.InvalidURL as exc:
            raise Undeliverable(f"invalid URL: {exc}") from exc
        except httpx.HTTPError as exc:
            raise NoAnswer(f"{exc.__class__.__name__}: {exc}" if str(exc) else repr(exc)) from exc
        except (UnicodeError, ValueError) as exc:
            raise Undeliverable(f"cannot be sent: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
