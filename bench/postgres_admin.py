"""The benchmarks' own databases on the PostgreSQL at 127.0.0.1:5432."""

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def admin_connection() -> Iterator[sa.Connection]:
    """A connection to the server's `postgres` database, each statement outside a
    transaction (CREATE and DROP DATABASE must be)."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            yield conn
    finally:
        admin.dispose()


def as_admin(*statements: str) -> None:
    """Run `statements` on the server's `postgres` database, each outside a transaction."""
    with admin_connection() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def database_url(name: str) -> str:
    """The URL of the database `name` on that server."""
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
