"""The Alembic tree: one head, builds the schema from empty, matches the tables."""

import warnings

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from conveyor.storage import migrate
from conveyor.storage.db import Database
from conveyor.storage.tables import metadata


def test_single_head() -> None:
    assert len(migrate.heads()) == 1


def index_definition(db: Database, name: str) -> str:
    """The index's definition as the database holds it ("" if there is none)."""
    if db.is_sqlite:
        query = sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :n")
    else:
        query = sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n")
    with db.read() as conn:
        return str(conn.execute(query, {"n": name}).scalar() or "")


def test_upgrade_from_empty_matches_the_models(empty_database_url: str) -> None:
    db = Database.from_url(empty_database_url)
    try:
        assert migrate.current_revision(db) is None
        migrate.upgrade(db)
        assert migrate.current_revision(db) == migrate.heads()[0]
        with db.read() as conn, warnings.catch_warnings():
            # SQLite's reflection cannot read an index on an expression: checked below.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", ".*expression-based index 'ix_task_commits_commit")
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == []
        made = index_definition(db, "ix_task_commits_commit_head").replace(
            "(commit_sha)::text", "commit_sha"
        )
        assert "substr(commit_sha, 1, 8), task_pk)" in made
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


def test_stepping_back_from_the_outbox_keeps_every_tasks_rows(empty_database_url: str) -> None:
    """0006 adds a column to `tasks`: undoing it must not copy the table (on SQLite a
    copy with foreign keys on cascades to each task's commits, attempts and jobs)."""
    import sqlalchemy as sa

    from conveyor.storage.tables import task_commits, tasks

    db = Database.from_url(empty_database_url)
    try:
        migrate.upgrade(db)
        with db.write() as conn:
            pk = conn.execute(
                tasks.insert()
                .values(
                    workflow_name="wf", task_id=1, env_name="dev", state="queued", attempt=1,
                    create_time=1, created_by="alice", spec={},
                )
                .returning(tasks.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                task_commits.insert().values(
                    task_pk=pk, service="s", repo_name="r", kind="branch", ref="main", pr=0,
                    commit_sha="a" * 40,
                )
            )  # fmt: skip
        migrate.downgrade(db, "0005")
        with db.read() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM task_commits")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one() == 1
        migrate.upgrade(db)
    finally:
        db.dispose()
