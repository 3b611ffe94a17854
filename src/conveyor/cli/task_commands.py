"""`conveyor login` and `conveyor task …`: start, follow, cancel and restart tasks over a
server's HTTP API, with exit codes a script can use (docs/cli.md)."""

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.client.api import (
    AUTH,
    PASSED,
    TASKS,
    TERMINAL,
    Api,
    ClientError,
    exit_code,
)
from conveyor.client.credentials import Credentials, resolve, save
from conveyor.client.targets import build_targets

task_app = typer.Typer(
    help="Start, follow, cancel and restart tasks on a server (see `conveyor login`).",
    no_args_is_help=True,
)
UrlOption = Annotated[
    str | None, typer.Option("--url", help="the server (default: CONVEYOR_URL, then login's)")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="an API token (default: CONVEYOR_TOKEN, then login's)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
Workflow = Annotated[str, typer.Argument(help="the workflow's name")]
TaskId = Annotated[int, typer.Argument(help="the task's id", min=1)]
# markup=False: a job's detail or a branch name with [brackets] is text, never styling.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


@contextmanager
def _api(url: str | None, token: str | None) -> Iterator[Api]:
    url, token = resolve(url, token)
    if not url:
        raise ClientError("no server: give --url, set CONVEYOR_URL, or run `conveyor login`")
    if not token:
        raise ClientError(
            "no token: give --token, set CONVEYOR_TOKEN, or run `conveyor login`", AUTH
        )
    api = Api(url, token)
    try:
        yield api
    finally:
        api.close()


def _run(action: Callable[[], int | None]) -> None:
    """Runs a command; a ClientError is one line on stderr and its exit code."""
    try:
        code = action()
    except ClientError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.code) from None
    raise typer.Exit(code or PASSED)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _took(start: int | None, end: int | None) -> str:
    if not start:
        return ""
    s = int((end or time.time()) - start)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s"


def _ref(commit: dict[str, Any]) -> str:
    ref = str(commit["ref"])
    if ref.startswith("refs/merge-requests/"):
        return f"MR !{ref.split('/')[2]}"
    return ref


def _repos(item: dict[str, Any]) -> str:
    return ", ".join(
        f"{r['service']}:{r['repo_name']}@{_ref(r)} {r['commit'][:8]}"
        for r in item.get("repos") or item.get("commits") or []
    )


def _jobs_table(task: dict[str, Any]) -> Table:
    table = Table(title=f"{task['workflow_name']} #{task['task_id']}: {task['status']}")
    for column in ("job", "attempt", "stage", "service", "status", "took", "why"):
        table.add_column(column)
    for j in task["jobs"]:
        table.add_row(
            str(j["id"]), str(j["attempt"]), j["stage"], j["service"], j["status"],
            _took(j["start_time"], j["end_time"]), j["detail"] or "",
        )  # fmt: skip
    return table


def _wait(api: Api, workflow: str, task_id: int, as_json: bool) -> int:
    """Until the task ends: a live table on a terminal, a line per change otherwise."""
    api.patient = True
    seen: dict[int, str] = {}
    task = api.task(workflow, task_id)
    if out.is_terminal and not as_json:
        with Live(_jobs_table(task), console=out, refresh_per_second=4) as live:
            while task["status"] not in TERMINAL:
                task = api.task(workflow, task_id, wait_s=1)
                live.update(_jobs_table(task))
    else:
        while True:
            for j in task["jobs"]:
                if not as_json and seen.get(j["id"]) != j["status"]:
                    seen[j["id"]] = j["status"]
                    why = f" ({j['detail']})" if j["detail"] else ""
                    out.print(f"{j['stage']} {j['service']}: {j['status']}{why}", markup=False)
            if task["status"] in TERMINAL:
                break
            task = api.task(workflow, task_id, wait_s=1)
    if as_json:
        _print_json(task)
    else:
        out.print(f"{workflow} #{task_id} {task['status']}: {task['url']}", markup=False)
    return exit_code(task["status"])


def login(
    url: Annotated[str, typer.Option("--url", help="the server, e.g. https://ci.example.com")],
    token: Annotated[
        str | None, typer.Option("--token", help="the token (default: asked for, not echoed)")
    ] = None,
) -> None:
    """Check a token against a server and keep both for the `task` commands."""

    def action() -> int:
        given = token or typer.prompt("API token", hide_input=True)
        with _api(url, given) as api:
            workflows = api.get("/api/workflows")
        path = save(Credentials(url.rstrip("/"), given.strip()))
        out.print(f"signed in to {url}: {len(workflows)} workflows visible; saved in {path}",
                  markup=False)  # fmt: skip
        return PASSED

    _run(action)


@task_app.command("run")
def run(
    workflow: Workflow,
    target: Annotated[
        list[str],
        typer.Option("--target", "-t", help="SERVICE, SERVICE:REPO@BRANCH or SERVICE:REPO!MR"),
    ],
    env: Annotated[
        str | None, typer.Option(help="the environment (default: the workflow's)")
    ] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="a build variable, KEY=VALUE")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow it; exit with its code")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a task: the same create call as the API and the web UI."""

    def action() -> int:
        with _api(url, token) as api:
            wf = api.get(f"/api/workflows/{workflow}")
            body = {
                "workflow_name": workflow,
                "env_name": env or wf["env"],
                "targets": build_targets(target, var or [], wf),
            }
            created = api.post(f"{TASKS}/create", body)
            task_id = int(created["task_id"])
            page = f"{api.url}/workflows/{workflow}/tasks/{task_id}"
            if wait:
                if not as_json:
                    out.print(f"created {workflow} #{task_id}: {page}", markup=False)
                return _wait(api, workflow, task_id, as_json)
            if as_json:
                _print_json({**created, "url": page})
            else:
                out.print(f"created {workflow} #{task_id}: {page}", markup=False)
            return PASSED

    _run(action)


@task_app.command("list")
def list_tasks(
    workflow: Annotated[str | None, typer.Argument(help="one workflow (default: all)")] = None,
    status: Annotated[str | None, typer.Option(help="created, running, passed, …")] = None,
    commit: Annotated[str | None, typer.Option(help="a commit id or 8+ hex prefix")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="at most this many")] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tasks, newest first."""

    def action() -> int:
        with _api(url, token) as api:
            if workflow is not None:
                found = api.get(f"/api/workflows/{workflow}/tasks", limit=limit, status=status,
                                commit=commit)["tasks"]  # fmt: skip
            elif commit is not None:
                found = [t for t in api.get(TASKS, commitId=commit, limit=limit)
                         if status is None or t["status"] == status]  # fmt: skip
            else:
                found = []
                for wf in api.get("/api/workflows"):
                    found += api.get(f"/api/workflows/{wf['name']}/tasks", limit=limit,
                                     status=status)["tasks"]  # fmt: skip
                found = sorted(found, key=lambda t: -t["create_time"])[:limit]
        if as_json:
            _print_json(found)
            return PASSED
        table = Table()
        for column in ("workflow", "task", "status", "attempt", "created", "took", "built"):
            table.add_column(column)
        for t in found:
            started = t["status"] != "created"
            table.add_row(
                t["workflow_name"], str(t["task_id"]), t["status"], str(t.get("attempt", "")),
                _when(t["create_time"]),
                _took(t["start_time"] if started else None,
                      t["end_time"] if t["status"] in TERMINAL else None),
                _repos(t),
            )  # fmt: skip
        out.print(table)
        return PASSED

    _run(action)


@task_app.command("show")
def show(
    workflow: Workflow, task_id: TaskId, url: UrlOption = None, token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """A task: its commits, attempts and jobs."""

    def action() -> int:
        with _api(url, token) as api:
            task = api.task(workflow, task_id)
        if as_json:
            _print_json(task)
            return PASSED
        out.print(f"{workflow} #{task_id}: {task['status']}, attempt {task['attempt']}, "
                  f"env {task['env_name']}, created by {task['created_by']} "
                  f"{_when(task['create_time'])}\n{task['url']}", markup=False)  # fmt: skip
        commits = Table(title="commits")
        for column in ("service", "repo", "ref", "commit"):
            commits.add_column(column)
        for c in task["commits"]:
            commits.add_row(c["service"], c["repo_name"], _ref(c), c["commit"])
        out.print(commits)
        out.print(_jobs_table(task))
        return PASSED

    _run(action)


@task_app.command("logs")
def logs(
    workflow: Workflow,
    task_id: TaskId,
    job: Annotated[
        int | None, typer.Argument(help="one job's id (default: the latest attempt's)")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="until the job ends")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """A task's job logs, as the jobs wrote them (colours included)."""

    def action() -> int:
        with _api(url, token) as api:
            task = api.task(workflow, task_id)
            jobs = [j for j in task["jobs"] if j["id"] == job] if job is not None else [
                j for j in task["jobs"] if j["attempt"] == task["attempt"]
            ]  # fmt: skip
            if not jobs:
                raise ClientError(f"{workflow} #{task_id} has no job {job}")
            for j in jobs:
                if len(jobs) > 1:
                    sys.stdout.write(f"== {j['stage']} {j['service']} (job {j['id']}) ==\n")
                _print_log(api, j["log_url"], follow)
        return PASSED

    _run(action)


def _print_log(api: Api, log_url: str, follow: bool) -> None:
    """What the job wrote so far; with `follow`, on until it ends."""
    api.patient = follow
    offset = 0
    while True:
        for data, next_offset, complete in api.log_pieces(log_url, offset):
            offset = next_offset
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            if complete:
                return
            if not data:
                break  # caught up with a job still running
        if not follow:
            return
        time.sleep(0.5)


@task_app.command("cancel")
def cancel(
    workflow: Workflow, task_id: TaskId, url: UrlOption = None, token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Cancel a created or running task."""
    _act("cancel", workflow, task_id, url, token, as_json)


@task_app.command("restart")
def restart(
    workflow: Workflow, task_id: TaskId, url: UrlOption = None, token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Restart a failed, timed-out or cancelled task: what did not pass runs again."""
    _act("restart", workflow, task_id, url, token, as_json)


def _act(what: str, workflow: str, task_id: int, url: str | None, token: str | None,
         as_json: bool) -> None:  # fmt: skip
    def action() -> int:
        with _api(url, token) as api:
            api.post(f"{TASKS}/id/{task_id}/pipelines/{workflow}/{what}")
            task = api.task(workflow, task_id)
        if as_json:
            _print_json(task)
        else:
            verb = "cancelled" if what == "cancel" else "restarted"
            out.print(f"{verb} {workflow} #{task_id}: {task['status']}, attempt {task['attempt']}",
                      markup=False)  # fmt: skip
        return PASSED

    _run(action)


@task_app.command("wait")
def wait_for(
    workflow: Workflow, task_id: TaskId, url: UrlOption = None, token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Follow a task until it ends; exit 0 passed, 1 failed or timed out, 2 cancelled."""

    def action() -> int:
        with _api(url, token) as api:
            return _wait(api, workflow, task_id, as_json)

    _run(action)


__all__ = ["login", "task_app"]
