"""Who is calling: the user behind a token, and the token as listed."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a valid token, and the token's roles."""

    user: str
    roles: tuple[str, ...]
    token_id: int | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    user: str
    roles: tuple[str, ...]
    create_time: int
    expire_time: int | None
    revoke_time: int | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A browser session: the token it stands for, its CSRF token and its end."""

    token: TokenInfo
    csrf: str
    expire_time: int
