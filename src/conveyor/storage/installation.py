"""This installation's id: made once, on first use, and the same for every server and
worker that shares the database."""

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.storage.db import Database
from conveyor.storage.tables import installation


def installation_id(db: Database) -> str:
    with db.read() as conn:
        found = conn.execute(sa.select(installation.c.id)).scalar_one_or_none()
    if found is not None:
        return str(found)
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    with db.write() as conn:
        # Two processes starting at once: one id wins, and both read it back.
        conn.execute(
            insert(installation)
            .values(singleton=1, id=uuid.uuid4().hex)
            .on_conflict_do_nothing(index_elements=[installation.c.singleton])
        )
        return str(conn.execute(sa.select(installation.c.id)).scalar_one())
