"""Posting notifications over HTTP with httpx2: GitLab commit statuses with the
token, webhook events signed with their endpoint's secret (docs/adr/0013)."""

import hashlib
import hmac
from collections.abc import Mapping

import httpx2 as httpx

from conveyor.domain.notifications import GITLAB
from conveyor.domain.outbox import HttpAnswer, NoAnswer, OutboxEntry, Undeliverable

CONNECT_TIMEOUT_S = 5.0
TIMEOUT_S = 10.0
MAX_ANSWER_CHARS = 2000
USER_AGENT = "Conveyor/0.1"


def signature(secret: str, body: bytes) -> str:
    """X-Conveyor-Signature: HMAC-SHA256 of the exact body, as GitHub signs its hooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class HttpPoster:
    def __init__(
        self,
        gitlab_token: str | None,
        endpoint_secrets: Mapping[str, str | None],
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._token = gitlab_token
        self._secrets = dict(endpoint_secrets)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def post(self, entry: OutboxEntry) -> HttpAnswer:
        body = entry.body.encode()
        headers = {"Content-Type": "application/json"}
        if entry.channel == GITLAB:
            if not self._token:
                raise Undeliverable("gitlab.token is no longer configured")
            headers["PRIVATE-TOKEN"] = self._token
        else:
            if entry.url not in self._secrets:
                raise Undeliverable(f"{entry.url} is no longer a configured notification URL")
            headers["X-Conveyor-Event"] = entry.event
            headers["X-Conveyor-Delivery"] = entry.delivery_id
            secret = self._secrets[entry.url]
            if secret:
                headers["X-Conveyor-Signature"] = signature(secret, body)
        try:
            answer = self._client.post(entry.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise NoAnswer(f"{exc.__class__.__name__}: {exc}" if str(exc) else repr(exc)) from exc
        return HttpAnswer(answer.status_code, dict(answer.headers), answer.text[:MAX_ANSWER_CHARS])

    def close(self) -> None:
        self._client.close()
