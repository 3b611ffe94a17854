"""POST .../id/:id/pipelines/:name/cancel and .../restart"""

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.domain.states import JobState, TaskState
from conveyor.storage.tables import attempts, audit_log, jobs, tasks
from conveyor.wiring import Container
from tests.fixtures import WF, FakeClock, Headers, Repos, create_body

BASE = "/api/directory/workflowTask"


def url(action: str, task_id: object = 1, workflow: str = WF) -> str:
    return f"{BASE}/id/{task_id}/pipelines/{workflow}/{action}"


@pytest.fixture
def task(client: TestClient, admin: Headers) -> int:
    r = client.post(f"{BASE}/create", json=create_body(), headers=admin)
    assert r.status_code == 200
    task_id: int = r.json()["task_id"]
    return task_id


def force_state(container: Container, state: TaskState, **job_states: JobState) -> None:
    """Put task 1 where an executor would have left it."""
    with container.db.write() as conn:
        conn.execute(tasks.update().values(state=state, start_time=1, end_time=2))
        for stage, job_state in job_states.items():
            conn.execute(jobs.update().where(jobs.c.stage == stage).values(state=job_state))


def status_of(client: TestClient, headers: Headers, repos: Repos) -> dict[str, object]:
    sha = repos.voting.head("master")
    [item] = client.get(BASE, params={"commitId": sha}, headers=headers).json()
    return item  # type: ignore[no-any-return]


def test_cancel_a_created_task_at_once(
    client: TestClient, admin: Headers, task: int, repos: Repos, container: Container
) -> None:
    r = client.post(url("cancel"), headers=admin)
    assert (r.status_code, r.json()) == (200, {"resultCode": 0, "errorMsg": "success"})
    item = status_of(client, admin, repos)
    assert item["status"] == "cancelled"
    with container.db.read() as conn:
        states = conn.execute(sa.select(jobs.c.state)).scalars().all()
    assert set(states) == {"cancelled"}


def test_cancel_is_idempotent(client: TestClient, admin: Headers, task: int) -> None:
    assert client.post(url("cancel"), headers=admin).status_code == 200
    r = client.post(url("cancel"), headers=admin)
    assert (r.status_code, r.json()) == (200, {"resultCode": 0, "errorMsg": "success"})


def test_cancel_a_running_task_is_cancelled_once_recorded(
    client: TestClient, admin: Headers, task: int, repos: Repos, container: Container
) -> None:
    force_state(container, TaskState.RUNNING)
    assert client.post(url("cancel"), headers=admin).status_code == 200
    assert status_of(client, admin, repos)["status"] == "cancelled"
    with container.db.read() as conn:
        # The durable flag runners poll: the processes are stopped by the runner.
        assert conn.execute(sa.select(tasks.c.state)).scalar_one() == "cancelling"
    # Cancelling again while processes stop is still a success.
    assert client.post(url("cancel"), headers=admin).status_code == 200


@pytest.mark.parametrize("state", [TaskState.PASSED, TaskState.FAILED, TaskState.TIMEOUT])
def test_cancel_of_a_finished_task_is_409_and_keeps_its_status(
    client: TestClient,
    admin: Headers,
    task: int,
    repos: Repos,
    container: Container,
    state: TaskState,
) -> None:
    force_state(container, state)
    r = client.post(url("cancel"), headers=admin)
    assert r.status_code == 409
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (409, "task state conflict")
    assert (
        body["detail"]
        == f"task {WF}#1 is {state.value}; only created or running tasks can be cancelled"
    )
    assert status_of(client, admin, repos)["status"] == state.value


@pytest.mark.parametrize("state", [TaskState.QUEUED, TaskState.RUNNING, TaskState.PASSED])
def test_restart_is_409_unless_failed_timeout_or_cancelled(
    client: TestClient, admin: Headers, task: int, container: Container, state: TaskState
) -> None:
    force_state(container, state)
    r = client.post(url("restart"), headers=admin)
    assert r.status_code == 409
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (409, "task state conflict")
    public = {"queued": "created"}.get(state.value, state.value)
    assert body["detail"].startswith(f"task {WF}#1 is {public};")


@pytest.mark.parametrize("state", [TaskState.FAILED, TaskState.TIMEOUT, TaskState.CANCELLED])
def test_restart_requeues_the_same_task_and_reruns_only_jobs_that_did_not_pass(
    client: TestClient,
    admin: Headers,
    task: int,
    repos: Repos,
    container: Container,
    clock: FakeClock,
    state: TaskState,
) -> None:
    created = status_of(client, admin, repos)["create_time"]
    force_state(container, state, build=JobState.PASSED, deploy=JobState.FAILED)
    clock.offset += 30
    r = client.post(url("restart"), headers=admin)
    assert (r.status_code, r.json()) == (200, {"resultCode": 0, "errorMsg": "success"})
    item = status_of(client, admin, repos)
    assert item["task_id"] == 1
    assert item["status"] == "created"
    # Same create_time; start and end are reset until it runs again.
    assert item["create_time"] == created
    assert item["start_time"] == item["end_time"] == created
    with container.db.read() as conn:
        assert conn.execute(sa.select(tasks.c.attempt)).scalar_one() == 2
        assert conn.execute(sa.select(sa.func.count()).select_from(attempts)).scalar_one() == 2
        attempt_2 = conn.execute(
            sa.select(jobs.c.stage, jobs.c.state).where(jobs.c.attempt == 2)
        ).all()
        actions = (
            conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.id)).scalars().all()
        )
    assert attempt_2 == [("deploy", "pending")]
    assert actions[-1] == "task.restart"


def test_restart_of_a_cancelled_task_reruns_every_job(
    client: TestClient, admin: Headers, task: int, container: Container
) -> None:
    assert client.post(url("cancel"), headers=admin).status_code == 200
    assert client.post(url("restart"), headers=admin).status_code == 200
    assert client.post(url("cancel"), headers=admin).status_code == 200
    assert client.post(url("restart"), headers=admin).status_code == 200
    with container.db.read() as conn:
        rows = conn.execute(sa.select(jobs.c.attempt, jobs.c.stage, jobs.c.state)).all()
    assert sorted(rows) == [
        (1, "build", "cancelled"),
        (1, "deploy", "cancelled"),
        (2, "build", "cancelled"),
        (2, "deploy", "cancelled"),
        (3, "build", "pending"),
        (3, "deploy", "pending"),
    ]


@pytest.mark.parametrize("action", ["cancel", "restart"])
def test_unknown_task_is_404(client: TestClient, admin: Headers, task: int, action: str) -> None:
    r = client.post(url(action, task_id=2), headers=admin)
    assert r.status_code == 404
    assert r.json() == {
        "resultCode": 404,
        "errorMsg": "task not found",
        "detail": f"no task 2 in workflow '{WF}'",
    }
    # Task 1 of another workflow does not exist either: the pair identifies a task.
    r = client.post(url(action, task_id=1, workflow="team-b-deploy"), headers=admin)
    assert r.status_code == 404


@pytest.mark.parametrize("action", ["cancel", "restart"])
@pytest.mark.parametrize(
    ("task_id", "workflow", "detail"),
    [
        ("0", WF, "id: '0' is not a positive task id"),
        ("-1", WF, "id: '-1' is not a positive task id"),
        ("abc", WF, "id: 'abc' is not a positive task id"),
        ("01", WF, "id: '01' is not a positive task id"),
        ("1.5", WF, "id: '1.5' is not a positive task id"),
        ("99999999999999999999", WF, "id: '99999999999999999999' is not a positive task id"),
        ("1", "no-such-workflow", "name: unknown workflow 'no-such-workflow'"),
    ],
)
def test_bad_path_values_are_400(
    client: TestClient, admin: Headers, action: str, task_id: str, workflow: str, detail: str
) -> None:
    r = client.post(url(action, task_id=task_id, workflow=workflow), headers=admin)
    assert r.status_code == 400
    assert r.json() == {"resultCode": 400, "errorMsg": "param is illegal!", "detail": detail}


def test_restart_while_a_cancel_is_still_stopping_processes_is_allowed(
    client: TestClient, admin: Headers, task: int, repos: Repos, container: Container
) -> None:
    # Public status is already `cancelled`, so a restart must be accepted; the scheduler
    # holds the new attempt until the old processes are gone.
    force_state(container, TaskState.CANCELLING)
    assert client.post(url("restart"), headers=admin).status_code == 200
    assert status_of(client, admin, repos)["status"] == "created"
