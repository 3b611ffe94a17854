"""Who is calling (tokens) and what they may do (roles)."""

import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence

from conveyor.domain.audit import AuditEntry
from conveyor.domain.errors import AuthFailed, Forbidden, InvalidParam
from conveyor.domain.principals import Principal, SessionInfo, TokenInfo
from conveyor.services.ports import Clock, TokenStore
from conveyor.settings import RoleConfig

TOKEN_PREFIX = "cvy_"  # noqa: S105 - a marker, not a secret
# 32 random bytes, base64url without padding.
_TOKEN = re.compile(r"cvy_[A-Za-z0-9_-]{43}")
_SCHEMES = ("bearer", "x-api-key")


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def token_from_header(header: str | None) -> str:
    """The token in `Authorization: Bearer <t>` or `Authorization: X-API-KEY <t>`."""
    if not header:
        raise AuthFailed("no Authorization header")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in _SCHEMES:
        raise AuthFailed("Authorization must be 'Bearer <token>' or 'X-API-KEY <token>'")
    token = token.strip()
    if not _TOKEN.fullmatch(token):
        raise AuthFailed("malformed token")
    return token


SESSION_S = 12 * 3600
_COOKIE = re.compile(r"[A-Za-z0-9_-]{43}")


class TokenService:
    def __init__(self, store: TokenStore, roles: Mapping[str, RoleConfig], clock: Clock) -> None:
        self._store = store
        self._roles = roles
        self._clock = clock

    def issue(
        self, user: str, roles: Sequence[str], expires_in_s: int | None
    ) -> tuple[str, TokenInfo]:
        """A new token, returned once; only its hash is kept."""
        if not user.strip():
            raise InvalidParam("user: must not be empty")
        if not roles:
            raise InvalidParam("role: give at least one")
        unknown = [r for r in roles if r not in self._roles]
        if unknown:
            raise InvalidParam(
                f"role: unknown role {unknown[0]!r}; configured: {sorted(self._roles)}"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        info = self._store.add(
            token_hash=hash_token(token),
            user=user,
            roles=list(dict.fromkeys(roles)),
            create_time=now,
            expire_time=now + expires_in_s if expires_in_s else None,
            audit=AuditEntry(actor=user, action="token.create", detail={"roles": list(roles)}),
        )
        return token, info

    def authenticate(self, authorization: str | None) -> Principal:
        digest = self.digest_of(authorization)
        return self.principal_of(self._store.find_by_hash(digest), digest)

    @staticmethod
    def digest_of(authorization: str | None) -> str:
        """The hash to look the header's token up by; AuthFailed if it carries none."""
        return hash_token(token_from_header(authorization))

    def principal_of(self, found: tuple[TokenInfo, str] | None, digest: str) -> Principal:
        """Who the token looked up by `digest` (the token and its stored hash) is."""
        if found is None or not hmac.compare_digest(found[1], digest):
            raise AuthFailed("unknown token")
        return self._check(found[0])

    def _check(self, info: TokenInfo) -> Principal:
        if info.revoke_time is not None:
            raise AuthFailed("token revoked")
        if info.expire_time is not None and info.expire_time <= self._clock():
            raise AuthFailed("token expired")
        return Principal(user=info.user, roles=info.roles, token_id=info.id)

    # -- browser sessions -------------------------------------------------------------

    def open_session(self, token: str) -> tuple[str, SessionInfo, int]:
        """Exchange a valid token for a session: (the cookie's value, returned once; the
        session; seconds it lasts). It ends when the token expires or is revoked, after
        SESSION_S at most, or at logout."""
        principal = self.authenticate(f"Bearer {token}")
        found = self._store.find_by_hash(hash_token(token))
        assert found is not None and principal.token_id is not None
        info = found[0]
        now = self._clock()
        end = now + SESSION_S
        if info.expire_time is not None:
            end = min(end, info.expire_time)
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        self._store.prune_sessions(now)
        self._store.add_session(hash_token(cookie), principal.token_id, csrf, now, end)
        return cookie, SessionInfo(info, csrf, end), end - now

    def session(self, cookie: str) -> tuple[SessionInfo, Principal]:
        """The session a cookie opens, checked again against its token."""
        found = self._store.find_session(hash_token(cookie)) if _COOKIE.fullmatch(cookie) else None
        if found is None:
            raise AuthFailed("session ended: sign in again")
        if found.expire_time <= self._clock():
            raise AuthFailed("session expired: sign in again")
        return found, self._check(found.token)

    def authenticate_session(self, cookie: str, csrf: str | None, changes: bool) -> Principal:
        """Who a page's request comes from; a request that `changes` something must
        carry the session's CSRF token (a page has it, another site cannot)."""
        found, principal = self.session(cookie)
        if changes and not hmac.compare_digest((csrf or "").encode(), found.csrf.encode()):
            raise Forbidden("X-CSRF-Token: missing or not this session's")
        return principal

    def close_session(self, cookie: str) -> bool:
        return _COOKIE.fullmatch(cookie) is not None and self._store.end_session(hash_token(cookie))

    def list(self) -> list[TokenInfo]:
        return self._store.list()

    def revoke(self, token_id: int, actor: str) -> bool:
        return self._store.revoke(
            token_id,
            self._clock(),
            AuditEntry(actor=actor, action="token.revoke", token_id=token_id),
        )


class Authorizer:
    """Roles grant permissions on the workflows whose names match their globs."""

    def __init__(self, roles: Mapping[str, RoleConfig], workflows: Sequence[str]) -> None:
        self._roles = roles
        self._workflows = tuple(workflows)

    def _globs(self, principal: Principal, permission: str) -> list[str]:
        return [
            glob
            for name in principal.roles
            if (role := self._roles.get(name)) is not None and permission in role.permissions
            for glob in role.workflows
        ]

    def allows(self, principal: Principal, permission: str, workflow: str) -> bool:
        return any(fnmatch.fnmatchcase(workflow, g) for g in self._globs(principal, permission))

    def require(self, principal: Principal, permission: str, workflow: str) -> None:
        if not self.allows(principal, permission, workflow):
            raise Forbidden(f"user {principal.user!r} lacks {permission} on workflow {workflow!r}")

    def viewable_workflows(self, principal: Principal) -> frozenset[str] | None:
        """Workflows whose tasks the caller may see; None means every workflow."""
        globs = self._globs(principal, "task:view")
        if "*" in globs:
            return None
        return frozenset(
            w for w in self._workflows if any(fnmatch.fnmatchcase(w, g) for g in globs)
        )
