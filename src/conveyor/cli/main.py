"""`conveyor serve | check-config | token … | worker | demo` on a server's machine, and
`conveyor login | task …` anywhere (cli/task_commands.py)."""

import gc
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.task_commands import login, task_app
from conveyor.client.api import USAGE

# The server's machinery (SQLAlchemy, psycopg, Alembic, FastAPI) is imported by the
# commands that use it: `conveyor task …` on a laptop starts in a third of the time.
if TYPE_CHECKING:
    from conveyor.preflight import Problem
    from conveyor.settings import Config
    from conveyor.wiring import Container

app = typer.Typer(help="Conveyor: CI/CD workflow tasks.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(task_app, name="task")
app.command("login")(login)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"conveyor {version('conveyor')}")
        raise typer.Exit()


_debug = False


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback behind an error at start")
    ] = False,
) -> None:
    """Conveyor: CI/CD workflow tasks."""
    global _debug
    _debug = debug


# A database or broker that cannot be reached at start (docs/operations.md).
UNREACHABLE = 3


def _require(problem: "Problem | None") -> None:
    """A problem found before starting is one line and exit 3; with --debug, the
    traceback behind it first."""
    if problem is None:
        return
    if _debug and problem.cause is not None:
        traceback.print_exception(problem.cause)
    raise _fail(f"error: {problem.message}", UNREACHABLE)


def _require_database(cfg: "Config") -> None:
    from conveyor.preflight import database_problem

    _require(database_problem(cfg.database_url))


ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="the YAML config file", envvar="CONVEYOR_CONFIG")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _config(path: Path) -> "Config":
    from conveyor.config_file import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _container(path: Path) -> Iterator["Container"]:
    from conveyor.wiring import build_container

    cfg = _config(path)
    _require_database(cfg)
    container = build_container(cfg)
    try:
        container.migrate()
        yield container
    finally:
        container.db.dispose()


def _check_runner(path: Path, cfg: "Config", logged: bool = False) -> None:
    """`logged`: warnings go to the log (a server's or worker's, maybe JSON), not stderr."""
    from conveyor.wiring import runner_problems, runner_warnings

    problems = runner_problems(cfg)
    if problems:
        raise _fail(f"{path}: cannot run jobs here as configured\n" + "\n".join(problems))
    for warning in runner_warnings(cfg):
        if logged:
            logging.getLogger("conveyor").warning("%s: %s", path, warning)
        else:
            typer.echo(f"{path}: warning: {warning}", err=True)


LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format", help="text, or json: one object a line, with task, job and request ids"
    ),
]


def _configure_logging(fmt: str = "text") -> None:
    from conveyor.log_format import configure

    if fmt not in ("text", "json"):
        raise _fail(f"--log-format: {fmt!r} is not text or json", USAGE)
    configure("json" if fmt == "json" else "text")


def _when(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command("check-config")
def check_config(
    config: ConfigOption,
    connect: Annotated[
        bool, typer.Option("--connect", help="also try the database and the broker")
    ] = False,
) -> None:
    """Validate a config file without starting anything."""
    from conveyor.preflight import broker_problem, database_problem, driver_problem

    cfg = _config(config)
    if cfg.executor == "local":  # this machine runs the jobs: can it, as asked?
        _check_runner(config, cfg)
    problem = driver_problem(cfg.database_url)
    if problem is not None:
        raise _fail(f"{config}: {problem.message}")
    if connect:
        _require(database_problem(cfg.database_url))
        if cfg.executor == "celery" and cfg.broker_url:
            _require(broker_problem(cfg.broker_url, cfg.queue))
    typer.echo(
        f"{config}: ok ({len(cfg.repos)} repos, {len(cfg.services)} services, "
        f"{len(cfg.envs)} envs, {len(cfg.workflows)} workflows, {len(cfg.roles)} roles)"
    )


@app.command()
def serve(
    config: ConfigOption,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    log_format: LogFormatOption = "text",
) -> None:
    """Run migrations, then serve the API."""
    import uvicorn

    from conveyor.api.app import create_app
    from conveyor.preflight import broker_problem, shown
    from conveyor.wiring import build_container

    cfg = _config(config)  # a config that does not load is told on stderr, not logged
    _configure_logging(log_format)
    if cfg.executor == "local":
        _check_runner(config, cfg, logged=True)
    _require_database(cfg)
    if cfg.executor == "celery" and cfg.broker_url:
        # Not fatal: tasks wait, and their jobs are sent once the broker is back.
        problem = broker_problem(cfg.broker_url, cfg.queue)
        if problem is not None:
            logging.getLogger("conveyor").warning("%s; jobs wait until it answers", problem.message)
    container = build_container(cfg, run_jobs=True)
    container.migrate()
    logging.getLogger("conveyor").info(
        "database %s, executor %s, public_url %s",
        shown(container.config.database_url),
        container.config.executor,
        container.config.public_url,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Requests waiting for a task's end (?wait=) answer now: they would
            # otherwise hold the shutdown for up to a minute.
            container.task_ends.stop()
            super().handle_exit(sig, frame)

    settings = uvicorn.Config(
        create_app(container),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        log_config=None,  # uvicorn's lines go through the handler configured above
    )
    Server(settings).run()


@token_app.command("create")
def token_create(
    config: ConfigOption,
    user: Annotated[str, typer.Option(help="who the token belongs to")],
    role: Annotated[list[str], typer.Option(help="a role from the config; repeat for more")],
    expires: Annotated[
        str | None, typer.Option(help="lifetime, e.g. 30d, 12h; default never")
    ] = None,
) -> None:
    """Print a new token on stdout. It is shown only this once."""
    from conveyor.domain.durations import parse_duration
    from conveyor.domain.errors import InvalidParam

    try:
        expires_in = parse_duration(expires) if expires is not None else None
    except ValueError as exc:
        raise _fail(f"--expires: {exc}") from None
    with _container(config) as container:
        try:
            token, _ = container.tokens.issue(user, role, expires_in)
        except InvalidParam as exc:
            raise _fail(f"--{exc.detail}") from None
    typer.echo(token)


@token_app.command("list")
def token_list(config: ConfigOption) -> None:
    """List tokens (never the tokens themselves)."""
    with _container(config) as container:
        tokens = container.tokens.list()
    typer.echo(f"{'ID':>4}  {'USER':<16} {'ROLES':<24} {'CREATED':<21} {'EXPIRES':<21} REVOKED")
    for t in tokens:
        typer.echo(
            f"{t.id:>4}  {t.user:<16} {','.join(t.roles):<24} {_when(t.create_time):<21} "
            f"{_when(t.expire_time):<21} {_when(t.revoke_time)}"
        )


@token_app.command("revoke")
def token_revoke(
    config: ConfigOption, token_id: Annotated[int, typer.Argument(help="the ID from `token list`")]
) -> None:
    """Revoke a token at once."""
    with _container(config) as container:
        revoked = container.tokens.revoke(token_id, actor="cli")
    if not revoked:
        raise _fail(f"no active token with id {token_id}", code=1)
    typer.echo(f"token {token_id} revoked")


@app.command()
def worker(
    config: ConfigOption,
    queues: Annotated[
        str | None, typer.Option(help="comma-separated queues to take jobs from (default: `queue`)")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="jobs at once")] = 2,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve this worker's Prometheus metrics on this port")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="the address the metrics port listens on")
    ] = "127.0.0.1",
    log_format: LogFormatOption = "text",
) -> None:
    """Run jobs from the broker (executor: celery), with the same runner as the server."""
    from conveyor.preflight import broker_problem
    from conveyor.wiring import migrate_database
    from conveyor.worker import run_worker

    cfg = _config(config)
    if cfg.executor != "celery":
        raise _fail(f"{config}: executor is {cfg.executor!r}; workers need executor: celery")
    _configure_logging(log_format)
    _check_runner(config, cfg, logged=True)
    _require_database(cfg)
    if cfg.broker_url:
        _require(broker_problem(cfg.broker_url, cfg.queue))
    migrate_database(cfg)  # as `serve` does: a worker may start first
    address = (metrics_host, metrics_port) if metrics_port is not None else None
    try:
        run_worker(cfg, [q for q in (queues or "").split(",") if q], concurrency, address)
    except SystemExit:
        # How run_worker ends once it has closed what it opened. The interpreter's
        # finalization would collect again and again over every object the worker made
        # (0.6 s of an idle worker's stop); frozen, they are left to the exit, and no
        # cyclic garbage is finalized.
        gc.freeze()
        raise


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="where to put the demo")] = Path(".demo"),
    port: Annotated[int, typer.Option(help="the port `serve` will listen on")] = 8080,
) -> None:
    """Prepare a demo: a git repository, a config, a token, and curl lines to try."""
    from conveyor.demo import demo_instructions, prepare_demo

    typer.echo(demo_instructions(prepare_demo(directory, port)))


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if exc.__class__.__name__ == "Abort":  # no terminal to ask on, or Ctrl-D
            sys.stderr.write("error: aborted (no input)\n")
            sys.exit(USAGE)
        # A click error (typer carries its own copy of click): shown as click shows it,
        # but a usage error exits 3, not click's 2, which means "cancelled" to a script
        # waiting on a task (docs/cli.md).
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if show is None or not isinstance(code, int):
            raise
        show()
        sys.exit(USAGE if code == 2 else code)
    sys.exit(code if isinstance(code, int) else 0)
