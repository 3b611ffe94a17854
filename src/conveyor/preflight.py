"""What a command checks before it starts: that the database driver is installed and the
database and broker answer. Each problem is one line that says what, where (password
hidden) and what to check; the exception behind it is kept for `--debug`."""

from dataclasses import dataclass

import sqlalchemy as sa

from conveyor.executors.celery import broker_error, celery_app

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    cause: BaseException | None = None


def shown(url: str) -> str:
    """A database or broker URL with its password replaced by ***."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<not a URL>"


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return text[0] if text else cause.__class__.__name__


def driver_problem(database_url: str) -> Problem | None:
    """The database_url's driver must be importable: `postgresql+psycopg2://` without
    psycopg2 installed fails here, not at the first request."""
    try:
        url = sa.make_url(database_url)
        url.get_dialect().import_dbapi()
    except sa.exc.ArgumentError as exc:
        return Problem(f"database_url: {exc}", exc)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        return Problem(
            f"database_url {shown(database_url)}: its driver is not installed ({exc}); "
            "Conveyor ships psycopg (postgresql+psycopg://) and SQLite (sqlite:///)",
            exc,
        )
    return None


def database_problem(database_url: str) -> Problem | None:
    """The driver is there and the database answers a query."""
    found = driver_problem(database_url)
    if found is not None:
        return found
    url = sa.make_url(database_url)
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return Problem(
            f"the database at {shown(database_url)} cannot be reached: {_first_line(exc)}; "
            "check that it runs and accepts connections, and database_url "
            "(or CONVEYOR_DATABASE_URL)",
            exc,
        )
    finally:
        engine.dispose()
    return None


def broker_problem(broker_url: str, queue: str) -> Problem | None:
    app = celery_app(broker_url, queue)
    try:
        exc = broker_error(app, CONNECT_TIMEOUT_S)
    finally:
        app.close()
    if exc is None:
        return None
    return Problem(
        f"the broker at {shown(broker_url)} cannot be reached: {_first_line(exc)}; "
        "check that Redis or RabbitMQ runs there, and broker_url (or CONVEYOR_BROKER_URL)",
        exc,
    )
