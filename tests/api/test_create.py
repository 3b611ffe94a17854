"""POST /api/directory/workflowTask/create"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conveyor.storage.tables import audit_log, jobs, task_commits, tasks, workflow_sequences
from conveyor.wiring import Container
from tests.fixtures import WF, Headers, Repos, create_body

URL = "/api/directory/workflowTask/create"


def count_rows(container: Container) -> dict[str, int]:
    with container.db.read() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (tasks, task_commits, jobs, audit_log, workflow_sequences)
        }


def test_create_returns_the_workflow_and_a_task_id(
    client: TestClient, admin: Headers, container: Container
) -> None:
    r = client.post(URL, json=create_body(), headers=admin)
    assert r.status_code == 200
    assert r.json() == {"workflow_name": WF, "task_id": 1}
    r = client.post(URL, json=create_body(), headers=admin)
    assert r.json() == {"workflow_name": WF, "task_id": 2}
    # Ids are per workflow: another workflow starts at 1.
    other = {
        "workflow_name": "team-b-deploy",
        "env_name": "prod",
        "targets": [{"name": "web", "build": {"repos": []}}],
    }
    r = client.post(URL, json=other, headers=admin)
    assert r.json() == {"workflow_name": "team-b-deploy", "task_id": 1}


def test_x_api_key_scheme_is_accepted(client: TestClient, auth: Callable[..., Headers]) -> None:
    r = client.post(URL, json=create_body(), headers=auth("admin", scheme="X-API-KEY"))
    assert r.status_code == 200


def test_two_repos_branch_and_merge_request_resolve_to_exact_commits(
    client: TestClient, admin: Headers, repos: Repos
) -> None:
    master = repos.voting.head("master")
    mr_head = repos.voting.merge_request(7, "feature for MR 7")
    feature = repos.dyliu.commit("on feature", branch="feature/x")
    body = create_body(
        targets=[
            {
                "name": "redis3",
                "build": {
                    "repos": [
                        {"repo_name": "voting-app", "branch": "master", "pr": 7},
                        {"repo_name": "dyliu", "branch": "feature/x"},
                    ]
                },
            }
        ]
    )
    assert client.post(URL, json=body, headers=admin).status_code == 200

    def lookup(commit_id: str) -> list[dict[str, Any]]:
        r = client.get(f"/api/directory/workflowTask?commitId={commit_id}", headers=admin)
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()
        return result

    for sha, kind, ref in (
        (mr_head, "merge_request", "refs/merge-requests/7/head"),
        (master, "branch", "master"),
        (feature, "branch", "feature/x"),
    ):
        for commit_id in (sha, sha[:8], sha[:8].upper(), sha.upper()):
            [item] = lookup(commit_id)
            assert item["task_id"] == 1
            assert [(m["kind"], m["ref"], m["commit"]) for m in item["repos"]] == [(kind, ref, sha)]
    r = client.get(f"/api/directory/workflowTask?commitId={mr_head[:7]}", headers=admin)
    assert r.status_code == 400


def test_left_out_repos_build_from_their_default_branch(
    client: TestClient, admin: Headers, repos: Repos
) -> None:
    body = create_body(
        targets=[
            {
                "name": "redis3",
                "build": {"repos": [{"repo_name": "voting-app", "branch": "master"}]},
            }
        ]
    )
    assert client.post(URL, json=body, headers=admin).status_code == 200
    dyliu_main = repos.dyliu.head("main")
    r = client.get(f"/api/directory/workflowTask?commitId={dyliu_main}", headers=admin)
    [item] = r.json()
    assert item["repos"][0]["repo_name"] == "dyliu"
    assert item["repos"][0]["ref"] == "main"


def test_create_captures_commits_and_step_definitions(
    client: TestClient, admin: Headers, container: Container, repos: Repos
) -> None:
    body = create_body()
    body["targets"][0]["envs"] = [{"key": "FLAVOUR", "value": "x y"}]  # type: ignore[index]
    assert client.post(URL, json=body, headers=admin).status_code == 200
    with container.db.read() as conn:
        spec = conn.execute(sa.select(tasks.c.spec)).scalar_one()
        job_rows = conn.execute(sa.select(jobs.c.stage, jobs.c.service, jobs.c.state)).all()
    [target] = spec["targets"]
    assert target["build"] == {
        "script": "make build",
        "timeout_s": 3600,
        "queue": None,
        "outputs": [],
        "checkout": True,
    }
    assert target["deploy"]["checkout"] is True  # deploy.checkout's default, captured
    # The declared defaults are captured with the request's values, for restarts.
    assert target["envs"] == [["FLAVOUR", "x y"], ["SIZE", ""], ["MODE", ""]]
    assert [r["commit"] for r in target["repos"]] == [
        repos.voting.head("master"),
        repos.dyliu.head("main"),
    ]
    assert spec["env_vars"] == [["NAMESPACE", "dev"]]
    assert sorted(job_rows) == [("build", "redis3", "pending"), ("deploy", "redis3", "pending")]


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("not json", b"{nope", "body: "),
    ("a list", [], "body: Input should be an object"),
    ("unknown field", create_body(extra=1), "extra: unknown field"),
    ("no workflow", {"env_name": "dev", "targets": []}, "workflow_name: required"),
    ("workflow not a string", create_body(workflow_name=5), "workflow_name: Input should be"),
    ("unknown workflow", create_body(workflow_name="nope"), "workflow_name: unknown workflow"),
    ("env not allowed", create_body(env_name="prod"), "env_name: workflow"),
    ("unknown env", create_body(env_name="qa"), "env_name: workflow"),
    ("no targets", create_body(targets=[]), "targets: List should have at least 1 item"),
    (
        "service not in workflow",
        create_body(targets=[{"name": "redis4", "build": {"repos": []}}]),
        "targets[0].name: service 'redis4' is not part of this workflow",
    ),
    (
        "duplicate target",
        create_body(
            targets=[
                {"name": "web", "build": {"repos": []}},
                {"name": "web", "build": {"repos": []}},
            ]
        ),
        "targets[1].name: service 'web' given twice",
    ),
    (
        "repo not built by service",
        create_body(
            targets=[
                {
                    "name": "web",
                    "build": {"repos": [{"repo_name": "voting-app", "branch": "master"}]},
                }
            ]
        ),
        "targets[0].build.repos[0].repo_name: repo 'voting-app' is not built by service 'web'",
    ),
    (
        "duplicate repo",
        create_body(
            targets=[
                {
                    "name": "web",
                    "build": {
                        "repos": [
                            {"repo_name": "dyliu", "branch": "main"},
                            {"repo_name": "dyliu", "branch": "main"},
                        ]
                    },
                }
            ]
        ),
        "targets[0].build.repos[1].repo_name: repo 'dyliu' given twice",
    ),
    (
        "missing branch",
        create_body(targets=[{"name": "web", "build": {"repos": [{"repo_name": "dyliu"}]}}]),
        "targets[0].build.repos[0].branch: required",
    ),
    (
        "negative pr",
        create_body(
            targets=[
                {
                    "name": "web",
                    "build": {"repos": [{"repo_name": "dyliu", "branch": "main", "pr": -1}]},
                }
            ]
        ),
        "targets[0].build.repos[0].pr: Input should be greater than or equal to 0",
    ),
    (
        "pr as a string",
        create_body(
            targets=[
                {
                    "name": "web",
                    "build": {"repos": [{"repo_name": "dyliu", "branch": "main", "pr": "1"}]},
                }
            ]
        ),
        "targets[0].build.repos[0].pr: Input should be a valid integer",
    ),
    (
        "branch that does not exist",
        create_body(
            targets=[
                {"name": "web", "build": {"repos": [{"repo_name": "dyliu", "branch": "nope"}]}}
            ]
        ),
        "targets[0].build.repos[0]: branch 'nope' not found in repo 'dyliu'",
    ),
    (
        "merge request that does not exist",
        create_body(
            targets=[
                {
                    "name": "web",
                    "build": {"repos": [{"repo_name": "dyliu", "branch": "main", "pr": 99}]},
                }
            ]
        ),
        "targets[0].build.repos[0].pr: merge request 99 not found in repo 'dyliu'",
    ),
    (
        "env var key the service does not declare",
        create_body(
            targets=[
                {"name": "web", "build": {"repos": []}, "envs": [{"key": "A-B", "value": "1"}]}
            ]
        ),
        "targets[0].envs[0].key: 'A-B' is not a build variable of service 'web' "
        "(it declares none in services.web.build.variables)",
    ),
    *(
        (
            f"env var {key} that is no declared build variable",
            create_body(
                targets=[
                    {
                        "name": "redis3",
                        "build": {"repos": []},
                        "envs": [{"key": "FLAVOUR", "value": "x"}, {"key": key, "value": "x"}],
                    }
                ]
            ),
            f"targets[0].envs[1].key: {key!r} is not a build variable of service 'redis3' "
            "(it declares ['FLAVOUR', 'MODE', 'SIZE'] in services.redis3.build.variables)",
        )
        for key in ("CONVEYOR_ENV", "BASH_ENV", "PATH", "LD_PRELOAD", "NAMESPACE", "flavour")
    ),
    (
        "a declared env var given twice",
        create_body(
            targets=[
                {
                    "name": "redis3",
                    "build": {"repos": []},
                    "envs": [{"key": "FLAVOUR", "value": "a"}, {"key": "FLAVOUR", "value": "b"}],
                }
            ]
        ),
        "targets[0].envs[1].key: 'FLAVOUR' given twice",
    ),
    *(
        (
            f"env var value {name}",
            create_body(
                targets=[
                    {
                        "name": "redis3",
                        "build": {"repos": []},
                        "envs": [{"key": "FLAVOUR", "value": value}],
                    }
                ]
            ),
            f"targets[0].envs[0].value: {why}",
        )
        for name, value, why in (
            ("with a newline", "a\nb", "must not hold control characters other than tab"),
            ("with NUL", "a\x00b", "must not hold control characters other than tab"),
            ("with ESC", "\x1b[31m", "must not hold control characters other than tab"),
            ("over 4 KiB", "é" * 2049, "must be at most 4096 bytes of UTF-8"),
        )
    ),
]


@pytest.mark.parametrize(
    ("body", "detail"), [(b, d) for _, b, d in BAD_BODIES], ids=[n for n, _, _ in BAD_BODIES]
)
def test_bad_input_is_400_with_a_detail_and_changes_nothing(
    client: TestClient, admin: Headers, container: Container, body: Any, detail: str
) -> None:
    before = count_rows(container)
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post(URL, headers=admin, **kwargs)
    assert r.status_code == 400
    payload = r.json()
    assert payload["resultCode"] == 400
    assert payload["errorMsg"] == "param is illegal!"
    assert payload["detail"].startswith(detail), payload["detail"]
    assert count_rows(container) == before


def test_a_rejected_create_consumes_no_task_id(client: TestClient, admin: Headers) -> None:
    assert client.post(URL, json=create_body(), headers=admin).json()["task_id"] == 1
    bad = create_body(
        targets=[{"name": "web", "build": {"repos": [{"repo_name": "dyliu", "branch": "gone"}]}}]
    )
    assert client.post(URL, json=bad, headers=admin).status_code == 400
    assert client.post(URL, json=create_body(), headers=admin).json()["task_id"] == 2


@pytest.mark.parametrize(
    "branch",
    [
        "--upload-pack=touch {marker}",
        "a;b",
        "../x",
        "$(touch {marker})",
        "`touch {marker}`",
        "x y",
        "foo.lock",
        "@",
        "-x",
        "a..b",
        "a\nb",
    ],
)
def test_hostile_branch_names_are_refused_and_nothing_runs(
    client: TestClient, admin: Headers, container: Container, tmp_path: Path, branch: str
) -> None:
    marker = tmp_path / "pwned"
    body = create_body(
        targets=[
            {
                "name": "web",
                "build": {
                    "repos": [{"repo_name": "dyliu", "branch": branch.format(marker=marker)}]
                },
            }
        ]
    )
    before = count_rows(container)
    r = client.post(URL, json=body, headers=admin)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("targets[0].build.repos[0].branch: ")
    assert not marker.exists()
    assert count_rows(container) == before


def test_an_unreachable_repository_is_a_500_that_names_it_and_stores_nothing(
    client: TestClient, admin: Headers, container: Container, repos: Repos
) -> None:
    before = count_rows(container)
    repos.dyliu.path.rename(repos.dyliu.path.with_name("moved"))
    r = client.post(URL, json=create_body(), headers=admin)
    assert r.status_code == 500
    body = r.json()
    assert (body["resultCode"], body["errorMsg"]) == (500, "internal error")
    assert "git ls-remote" in body["detail"] and "dyliu" in body["detail"]
    assert "does not appear to be a git repository" in body["detail"]
    assert r.headers["X-Request-ID"] in body["detail"]
    assert count_rows(container) == before


def test_create_is_audited(client: TestClient, admin: Headers, container: Container) -> None:
    client.post(URL, json=create_body(), headers=admin)
    with container.db.read() as conn:
        rows = conn.execute(
            sa.select(
                audit_log.c.actor, audit_log.c.action, audit_log.c.task_id, audit_log.c.detail
            ).where(audit_log.c.action == "task.create")
        ).all()
    assert [(r.actor, r.action, r.task_id) for r in rows] == [("alice", "task.create", 1)]
    assert json.loads(json.dumps(rows[0].detail)) == {"env_name": "dev", "targets": ["redis3"]}
