"""What one trivial task costs, counted rather than timed (issue 12): the write
transactions and the processes of a one-service task run by the local executor, with
real git and a real database. Counts are stable on a noisy machine; a regression that
adds a transaction or a process to every task fails here, not only in a benchmark."""

import collections
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.config_file import parse_config
from conveyor.domain.principals import Principal
from conveyor.executors.runner import TRASH
from conveyor.services.tasks import CreateRequest, TargetRequest
from conveyor.wiring import Container, build_container
from tests.conftest import RepoFactory

CONFIG = """
database_url: {database_url}
data_dir: {data}
max_parallel_tasks: 4
repos: {{app: {{url: "{repo}"}}}}
services: {{svc: {{build: {{repos: [app], script: "true"}}, deploy: {{script: "true"{deploy}}}}}}}
envs: {{dev: {{}}}}
workflows: {{wf: {{env: dev, services: [svc], parallel: true}}}}
roles: {{admin: {{permissions: [task:view, task:create], workflows: ["*"]}}}}
"""
TASKS = 6


@pytest.fixture(params=[True, False], ids=["deploy-checks-out", "deploy-checkout-false"])
def container(
    request: pytest.FixtureRequest, make_repo: RepoFactory, tmp_path: Path, empty_database_url: str
) -> Iterator[Container]:
    repo = make_repo("app")
    deploy = "" if request.param else ", checkout: false"
    text = CONFIG.format(
        database_url=empty_database_url, data=tmp_path / "data", repo=repo.url, deploy=deploy
    )
    built = build_container(parse_config(text), run_jobs=True)
    built.migrate()
    yield built
    built.stop()
    built.db.dispose()


def test_a_trivial_task_costs_six_write_transactions_and_a_checkout_a_job_that_wants_one(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = 2 if container.config.services["svc"].deploy.checkout else 1
    counts: collections.Counter[str] = collections.Counter()
    real = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        counts.update([" ".join(args[:2]) if isinstance(args, list) else "other"])
        real(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counting)
    container.start()
    counts.clear()
    writes_before = container.db.writes_begun  # the start's own: the installation's id
    principal = Principal("cost", ("admin",))
    for _ in range(TASKS):
        container.tasks.create(principal, CreateRequest("wf", "dev", (TargetRequest("svc", ()),)))
    open_tasks = sa.text("SELECT count(*) FROM tasks WHERE state NOT IN ('passed', 'failed')")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with container.db.read() as conn:
            if conn.execute(open_tasks).scalar() == 0:
                break
        time.sleep(0.02)
    with container.db.read() as conn:
        states = conn.execute(sa.text("SELECT state FROM tasks")).scalars().all()
    assert states == ["passed"] * TASKS
    # The create; the task's start (its build queued with it); the build's claim, and
    # its end with the deploy queued; the deploy's claim, and its end with the task's.
    # (A result that meets a pass of the scheduler's advancing its task leaves the step
    # to that pass, in a transaction of its own: 6 a task, or a few more now and then.)
    assert container.db.writes_begun - writes_before < 7 * TASKS
    # A build and a deploy: a script each, and a checkout each unless the deploy says
    # `checkout: false`. (The mirror's first clone, and the check that it holds a
    # commit, are the repository's, once per process.)
    assert (counts["git read-tree"], counts["bash -eo"]) == (checkouts * TASKS, 2 * TASKS)
    assert counts["git ls-remote"] == 0  # a create reads a local repository's refs itself
    # Workspaces are deleted off the jobs' path, by at most one `rm` a job (by fewer
    # under load: one `rm` takes whatever the trash holds), and none is left behind.
    assert TRASH.drain(30)
    assert counts["rm -rf"] <= 2 * TASKS
    workspaces = container.config.data_dir / "workspaces"
    assert [p.name for p in workspaces.iterdir()] == [".trash"]
    assert list((workspaces / ".trash").iterdir()) == []
