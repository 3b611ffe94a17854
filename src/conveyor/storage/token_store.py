"""API tokens, stored only as hashes."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from conveyor.domain.audit import AuditEntry
from conveyor.domain.principals import SessionInfo, TokenInfo
from conveyor.storage.db import AnyRow, Database, PreparedQuery, json_value
from conveyor.storage.tables import api_tokens, sessions
from conveyor.storage.task_store import TOKEN_COLUMNS, write_audit

_COLUMNS = TOKEN_COLUMNS[:-1]  # all but the hash


_BY_HASH = sa.select(*TOKEN_COLUMNS).where(api_tokens.c.token_hash == sa.bindparam("token_hash"))


def _info(row: AnyRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=row.user_name,
        roles=tuple(row.roles),
        create_time=row.create_time,
        expire_time=row.expire_time,
        revoke_time=row.revoke_time,
    )


def token_of(rows: list[tuple[Any, ...]]) -> tuple[TokenInfo, str] | None:
    """The token and its stored hash, from the rows of SqlTokenStore.by_hash (or the
    token's part of a lookup's, task_store.lookups_with_token)."""
    if not rows:
        return None
    id_, user, roles, create_time, expire_time, revoke_time, stored_hash = rows[0]
    info = TokenInfo(id_, user, tuple(json_value(roles)), create_time, expire_time, revoke_time)
    return info, stored_hash


class SqlTokenStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._by_hash = PreparedQuery(_BY_HASH, db.engine.dialect)

    def add(
        self,
        *,
        token_hash: str,
        user: str,
        roles: Sequence[str],
        create_time: int,
        expire_time: int | None,
        audit: AuditEntry,
    ) -> TokenInfo:
        with self._db.write() as conn:
            row = conn.execute(
                api_tokens.insert()
                .values(
                    token_hash=token_hash,
                    user_name=user,
                    roles=list(roles),
                    create_time=create_time,
                    expire_time=expire_time,
                )
                .returning(*_COLUMNS)
            ).one()
            info = _info(row)
            write_audit(conn, replace(audit, token_id=info.id), create_time)
        return info

    def find_by_hash(self, token_hash: str) -> tuple[TokenInfo, str] | None:
        return token_of(self._db.read_rows(*self.by_hash(token_hash)))

    def by_hash(self, token_hash: str) -> tuple[PreparedQuery, dict[str, Any]]:
        """The read behind find_by_hash, for a caller that runs it itself (token_of)."""
        return self._by_hash, {"token_hash": token_hash}

    def list(self) -> list[TokenInfo]:
        with self._db.read() as conn:
            return [_info(r) for r in conn.execute(sa.select(*_COLUMNS).order_by(api_tokens.c.id))]

    def revoke(self, token_id: int, time: int, audit: AuditEntry) -> bool:
        with self._db.write() as conn:
            result = conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == token_id, api_tokens.c.revoke_time.is_(None))
                .values(revoke_time=time)
            )
            if result.rowcount != 1:
                return False
            write_audit(conn, audit, time)
        return True

    # -- browser sessions -----------------------------------------------------------

    def add_session(
        self, id_hash: str, token_id: int, csrf: str, create_time: int, expire_time: int
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                sessions.insert().values(
                    id_hash=id_hash,
                    token_id=token_id,
                    csrf=csrf,
                    create_time=create_time,
                    expire_time=expire_time,
                )
            )

    def find_session(self, id_hash: str) -> SessionInfo | None:
        stmt = (
            sa.select(*_COLUMNS, sessions.c.csrf, sessions.c.expire_time.label("session_end"))
            .join(api_tokens, api_tokens.c.id == sessions.c.token_id)
            .where(sessions.c.id_hash == id_hash)
        )
        with self._db.read() as conn:
            row = conn.execute(stmt).one_or_none()
        if row is None:
            return None
        return SessionInfo(_info(row), row.csrf, row.session_end)

    def end_session(self, id_hash: str) -> bool:
        with self._db.write() as conn:
            return bool(
                conn.execute(sessions.delete().where(sessions.c.id_hash == id_hash)).rowcount
            )

    def prune_sessions(self, before: int) -> None:
        with self._db.write() as conn:
            conn.execute(sessions.delete().where(sessions.c.expire_time < before))
