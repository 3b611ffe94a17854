"""The Alembic tree: one head, builds the schema from empty, matches the tables."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from conveyor.storage import migrate
from conveyor.storage.db import Database
from conveyor.storage.tables import metadata


def test_single_head() -> None:
    assert len(migrate.heads()) == 1


def test_upgrade_from_empty_matches_the_models(empty_database_url: str) -> None:
    db = Database.from_url(empty_database_url)
    try:
        assert migrate.current_revision(db) is None
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.heads()[0]
        with db.read() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
        # Running it again is a no-op, as on every server start.
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.heads()[0]
    finally:
        db.dispose()


def test_downgrade_to_empty_and_back(empty_database_url: str) -> None:
    db = Database.from_url(empty_database_url)
    try:
        migrate.upgrade(db)
        migrate.downgrade(db, "base")
        with db.read() as conn:
            tables = set(conn.dialect.get_table_names(conn)) - {"alembic_version"}
        assert tables == set()
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.heads()[0]
    finally:
        db.dispose()
