"""Where a task's time goes, read from the server's own log lines ("job 7: queued ->
running", "task wf#3: running -> passed") and its database (which job is which task's
build or deploy). One-service workflows: a build, then a deploy.

    cd bench && ../.venv/bin/python timeline.py HOME/server.log HOME/conveyor.db
"""

import argparse
import re
import sqlite3
import statistics
from datetime import datetime
from pathlib import Path

LINE = re.compile(r"^(\S+ \S+) INFO conveyor\.state: (task \S+#|job )(\d+): \w+ -> (\w+)")
SEGMENTS = (
    "start -> build queued",
    "build queued -> running",
    "build running -> ended",
    "build ended -> deploy queued",
    "deploy queued -> running",
    "deploy running -> ended",
    "deploy ended -> task ended",
)


def changes(log: Path) -> dict[tuple[str, int, str], float]:
    """(\"task\" or \"job\", task id or job id, new state) -> when, in ms (the last one)."""
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000
            found[(m.group(2).split()[0], int(m.group(3)), m.group(4))] = at
    return found


def segments(log: Path, database: Path, task_ids: list[int]) -> dict[str, list[float]]:
    """Each segment's duration (ms) for each of `task_ids` that passed, and the total."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT t.task_id, j.stage, j.id FROM jobs j JOIN tasks t ON t.id = j.task_pk"
        ).fetchall()
    stage_job: dict[tuple[int, str], int] = {(t, stage): job for t, stage, job in rows}
    seen = changes(log)
    out: dict[str, list[float]] = {name: [] for name in (*SEGMENTS, "start -> task ended")}
    for task in task_ids:
        build, deploy = stage_job.get((task, "build"), -1), stage_job.get((task, "deploy"), -1)
        keys = [("task", task, "running"), ("job", build, "queued"), ("job", build, "running"),
                ("job", build, "passed"), ("job", deploy, "queued"), ("job", deploy, "running"),
                ("job", deploy, "passed"), ("task", task, "passed")]  # fmt: skip
        if any(k not in seen for k in keys):
            continue
        times = [seen[k] for k in keys]
        for name, a, b in zip(SEGMENTS, times, times[1:], strict=False):
            out[name].append(b - a)
        out["start -> task ended"].append(times[-1] - times[0])
    return out


def medians(found: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in found.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log", type=Path)
    parser.add_argument("database", type=Path)
    args = parser.parse_args()
    with sqlite3.connect(args.database) as conn:
        ids = [r[0] for r in conn.execute("SELECT task_id FROM tasks ORDER BY id")]
    for name, ms in medians(segments(args.log, args.database, ids)).items():
        print(f"{name:30s} p50 {ms:6.1f} ms")


if __name__ == "__main__":
    main()
