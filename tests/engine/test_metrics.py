"""/metrics after real tasks ran, read with prometheus_client's own parser: the counts
match what ran, the gauges what waits and runs, and a metrics_token guards it."""

import re
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.engine.conftest import Engine

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(engine: Engine, headers: dict[str, str] | None = None) -> Samples:
    r = engine.client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_count_what_ran_and_show_what_runs(engine: Engine) -> None:
    passed = engine.create(api="")
    engine.wait(passed)
    failed = engine.create(api="fail")
    engine.wait(failed)
    running = engine.create(api="sleep")
    engine.wait_for_pids(running)
    waiting = engine.create(api="")  # serial: waits behind the running one
    m = scrape(engine)
    wf = (("workflow", "serial"),)
    assert m[("conveyor_tasks_created_total", wf)] == 4
    assert m[("conveyor_tasks_finished_total", (("status", "passed"), *wf))] == 1
    assert m[("conveyor_tasks_finished_total", (("status", "failed"), *wf))] == 1
    assert m[("conveyor_task_duration_seconds_count", wf)] == 2
    assert m[("conveyor_tasks_running", wf)] == 1
    assert m[("conveyor_tasks_waiting", wf)] == 1
    assert m[("conveyor_jobs_running", ())] == 1
    assert 0 <= m[("conveyor_running_job_heartbeat_age_seconds", ())] < 30
    # Jobs: the passed task's build and deploy, the failed task's build (its deploy was
    # skipped, never run).
    assert m[("conveyor_jobs_finished_total", (("stage", "build"), ("status", "passed")))] == 1
    assert m[("conveyor_jobs_finished_total", (("stage", "build"), ("status", "failed")))] == 1
    assert m[("conveyor_jobs_finished_total", (("stage", "deploy"), ("status", "passed")))] == 1
    assert m[("conveyor_job_duration_seconds_count", (("stage", "build"),))] == 2

    assert engine.act("cancel", waiting) == 200  # never started: it ends at once
    m = scrape(engine)
    assert m[("conveyor_tasks_finished_total", (("status", "cancelled"), *wf))] == 1
    assert engine.act("cancel", running) == 200
    # It reads `cancelled` at once; it has ended when its processes have stopped.
    cancelled = ("conveyor_tasks_finished_total", (("status", "cancelled"), *wf))
    deadline = time.monotonic() + 30
    while (m := scrape(engine)).get(cancelled) != 2:
        assert time.monotonic() < deadline, "the cancelled task never ended"
        time.sleep(0.05)
    assert m[("conveyor_tasks_running", wf)] == 0
    assert m[("conveyor_tasks_waiting", wf)] == 0
    # Requests by route template, never by raw path (a series per task id would grow forever).
    create = (
        ("method", "POST"),
        ("route", "/api/directory/workflowTask/create"),
        ("status", "200"),
    )
    assert m[("conveyor_http_requests_total", create)] == 4
    detail = [k for k in m if k[0] == "conveyor_http_requests_total" and "tasks/{id}" in str(k)]
    assert detail == [] or all("{id}" in str(k) for k in detail)
    assert not [k for k in m if "/tasks/1" in str(k)]


def test_a_metrics_token_guards_the_metrics(engine_factory: Callable[..., Engine]) -> None:
    engine = engine_factory(extra="metrics_token: prometheus-reads-this\n")
    r = engine.client.get("/metrics")
    assert (r.status_code, r.json()["errorMsg"]) == (401, "auth failed!")
    wrong = engine.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    good = {"Authorization": "Bearer prometheus-reads-this"}
    assert ("conveyor_jobs_running", ()) in scrape(engine, good)
    # An API token does not read metrics, and the metrics token reads nothing else.
    assert engine.client.get("/metrics", headers=engine.headers).status_code == 401
    assert engine.client.get("/api/workflows", headers=good).status_code == 401


def test_a_metrics_token_from_an_unset_variable_keeps_metrics_closed(
    engine_factory: Callable[..., Engine],
) -> None:
    engine = engine_factory(extra="metrics_token: env:CONVEYOR_TEST_NEVER_SET\n")
    assert engine.client.get("/metrics").status_code == 401
    assert engine.client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_odd_methods_and_paths_make_no_new_series(engine: Engine) -> None:
    for method in ("FOO", "BAR", "GET"):
        engine.client.request(method, f"/no/such/{method}")
    m = scrape(engine)
    series = {k for k in m if k[0] == "conveyor_http_requests_total"}
    assert ("conveyor_http_requests_total",
            (("method", "other"), ("route", "unmatched"), ("status", "404"))) in series  # fmt: skip
    assert not [k for k in series if "FOO" in str(k) or "/no/such" in str(k)]


def test_a_task_restarted_while_it_stops_counts_as_cancelled_once(engine: Engine) -> None:
    task = engine.create(api="sleep")
    engine.wait_for_pids(task)
    assert engine.act("cancel", task) == 200
    assert engine.act("restart", task) == 200  # held until the old attempt has stopped
    cancelled = ("conveyor_tasks_finished_total", (("status", "cancelled"), ("workflow", "serial")))
    assert scrape(engine)[cancelled] == 1
    assert engine.act("cancel", task) == 200


def test_the_dashboard_and_the_docs_name_only_metrics_that_exist(engine: Engine) -> None:
    engine.wait(engine.create(api=""))
    exposed = {name for name, _ in scrape(engine)}
    root = Path(__file__).resolve().parents[2]
    for source in (root / "deploy" / "grafana-dashboard.json", root / "docs" / "operations.md"):
        named = set(re.findall(r"\bconveyor_[a-z_]+", source.read_text()))
        assert named, source
        # A docs table names a histogram by its base name; Prometheus adds the suffixes.
        missing = {n for n in named if n not in exposed and f"{n}_count" not in exposed}
        assert missing == set(), source
