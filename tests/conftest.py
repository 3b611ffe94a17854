"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when
CONVEYOR_TEST_DATABASE_URL is set), real git repositories, and a configured app."""

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.storage import migrate
from conveyor.storage.db import Database
from conveyor.storage.tables import metadata

PG_URL = os.environ.get("CONVEYOR_TEST_DATABASE_URL")

pytest_plugins = ["tests.fixtures", "tests.hooks.fake_gitlab"]


def drop_connections(database: Database) -> int:
    """Terminate every PostgreSQL connection to `database`'s database (as a restart of
    the server would): how many there were."""
    admin = sa.create_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": database.engine.url.database},
                ).scalar_one()
            )
    finally:
        admin.dispose()


# Tests of what never touches a database: the PostgreSQL run of the suite would only
# repeat them.
_NO_DATABASE = ("executors", "scm", "domain")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not PG_URL:
        return
    skip = pytest.mark.skip(reason="never touches a database: covered by the SQLite run")
    tests = Path(__file__).parent
    for item in items:
        if any(item.path.is_relative_to(tests / part) for part in _NO_DATABASE):
            item.add_marker(skip)


def backend_name() -> str:
    return "postgresql" if PG_URL else "sqlite"


def pytest_report_header() -> str:
    if PG_URL:
        shown = sa.make_url(PG_URL).render_as_string(hide_password=True)
        return f"conveyor database: PostgreSQL ({shown})"
    return "conveyor database: SQLite (set CONVEYOR_TEST_DATABASE_URL for PostgreSQL)"


class PgServer:
    """Creates throwaway databases on the server CONVEYOR_TEST_DATABASE_URL points at."""

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")

    def create(self) -> str:
        name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    if not PG_URL:
        yield None
        return
    server = PgServer(PG_URL)
    yield server
    server.admin.dispose()


@pytest.fixture
def empty_database_url(pg_server: PgServer | None, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, for migration tests."""
    if pg_server is None:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = pg_server.create()
    yield url
    pg_server.drop(url)


@pytest.fixture(scope="session")
def _migrated_template(
    pg_server: PgServer | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if pg_server is None:
        url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'template.db'}"
    else:
        url = pg_server.create()
    db = Database.from_url(url)
    migrate.upgrade(db)
    db.dispose()
    yield url
    if pg_server is not None:
        pg_server.drop(url)


@pytest.fixture
def database(_migrated_template: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated database with no rows: a copy of the template (SQLite) or the
    session's PostgreSQL database, truncated after each test."""
    if not PG_URL:
        path = tmp_path / "conveyor.db"
        shutil.copyfile(sa.make_url(_migrated_template).database or "", path)
        db = Database.from_url(f"sqlite:///{path}")
        yield db
        db.dispose()
        return
    db = Database.from_url(_migrated_template)
    yield db
    names = ", ".join(t.name for t in metadata.sorted_tables)
    with db.write() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.dispose()


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        },
    )
    return out.stdout.strip()


class GitRepo:
    """A real repository in a temp dir, with helpers to make commits and refs."""

    def __init__(self, path: Path, default_branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", default_branch)
        self.commit("initial")

    @property
    def url(self) -> str:
        return str(self.path)

    def commit(self, message: str, branch: str | None = None) -> str:
        if branch is not None:
            git(self.path, "checkout", "-q", "-B", branch)
        (self.path / "file.txt").write_text(f"{message}\n{uuid.uuid4()}\n")
        git(self.path, "add", "file.txt")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def merge_request(self, iid: int, message: str) -> str:
        """A commit reachable only from refs/merge-requests/<iid>/head, as GitLab keeps it."""
        base = git(self.path, "rev-parse", "HEAD")
        git(self.path, "checkout", "-q", "--detach")
        sha = self.commit(message)
        git(self.path, "update-ref", f"refs/merge-requests/{iid}/head", sha)
        git(self.path, "checkout", "-q", "-")
        assert git(self.path, "rev-parse", "HEAD") == base
        return sha

    def head(self, branch: str = "main") -> str:
        return git(self.path, "rev-parse", f"refs/heads/{branch}")


RepoFactory = Callable[..., GitRepo]


@pytest.fixture
def make_repo(tmp_path: Path) -> RepoFactory:
    def factory(name: str, default_branch: str = "main") -> GitRepo:
        return GitRepo(tmp_path / "repos" / name, default_branch)

    return factory


def alive(pid: int) -> bool:
    """The process exists and has not exited; a zombie has (it only awaits reaping)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[1][0] != "Z"
