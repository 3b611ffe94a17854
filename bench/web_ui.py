"""The web UI in Debian's chromium against a real server (SQLite, local executor):

- open a running job's log page -> its first log line on the page;
- a line the job writes -> that line on an open log page (the follow latency);
- open a finished 5 MB log -> usable (its last line and "Show earlier lines" shown);
- the task page's weight: every byte it loads (HTML, scripts, styles, API answers).

    cd bench && ../.venv/bin/python web_ui.py --rounds 10
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
from playwright.sync_api import Browser, Response, sync_playwright
from serving import free_port, pct, serve_with_token, stop

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///{home}/conveyor.db
data_dir: {home}/data
repos:
  app: {{url: "{home}/app", default_branch: main}}
services:
  svc:
    build:
      repos: [app]
      variables: {{MODE: ticks}}
      script: |
        case "$MODE" in
          ticks)
            until [ -e "{home}/stop-$CONVEYOR_TASK_ID" ]; do
              echo "tick $(date +%s%3N)"; sleep 0.25
            done ;;
          big)
            seq -f "line %06g of a log five megabytes long, to see how fast it shows up" 1 70000 ;;
        esac
    deploy: {{script: "true"}}
envs:
  dev: {{}}
workflows:
  wf: {{env: dev, services: [svc], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""


class Bench:
    def __init__(self, home: Path, browser: Browser, url: str, token: str) -> None:
        self.home, self.browser, self.url, self.token = home, browser, url, token
        self.api = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def create(self, mode: str) -> int:
        body = {
            "workflow_name": "wf",
            "env_name": "dev",
            "targets": [{"name": "svc", "build": {"repos": []},
                         "envs": [{"key": "MODE", "value": mode}]}],
        }  # fmt: skip
        r = self.api.post("/api/directory/workflowTask/create", json=body)
        task_id: int = r.raise_for_status().json()["task_id"]
        return task_id

    def job_when(self, task_id: int, statuses: set[str]) -> dict[str, Any]:
        while True:
            job: dict[str, Any] = self.api.get(f"/api/workflows/wf/tasks/{task_id}").json()["jobs"][
                0
            ]
            if job["status"] in statuses:
                return job
            time.sleep(0.05)

    def page(self) -> Any:
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.request.post(f"{self.url}/api/session", data={"token": self.token})
        return context.new_page()

    def first_line_of_a_running_log(self) -> tuple[float, list[float]]:
        """Seconds from opening the page to its first line; ms from each line written to
        it shown, over the next 20 lines."""
        task = self.create("ticks")
        job = self.job_when(task, {"running"})
        page = self.page()
        t0 = time.perf_counter()
        page.goto(f"{self.url}/workflows/wf/tasks/{task}/jobs/{job['id']}")
        page.wait_for_selector("#log .ln")
        opened = time.perf_counter() - t0
        page.evaluate(
            """() => { window.seen = [];
            new MutationObserver((ms) => { for (const m of ms) for (const n of m.addedNodes)
              if (n.classList && n.classList.contains("ln"))
                window.seen.push([n.textContent, Date.now()]);
            }).observe(document.getElementById("log"), { childList: true }); }"""
        )
        page.wait_for_function(
            "() => window.seen.filter((s) => s[0].includes('tick')).length >= 20"
        )
        seen: list[list[Any]] = page.evaluate("window.seen")
        (self.home / f"stop-{task}").touch()
        page.context.close()
        lags = []
        written_shown: dict[str, int] = {}
        for text, at in seen:
            if "tick " in text:
                written_shown.setdefault(text.split("tick ")[1].strip(), at)
        for written, shown in written_shown.items():
            lags.append(float(shown - int(written)))
        return opened, lags

    def big_log_usable(self, task: int, job: int) -> float:
        page = self.page()
        t0 = time.perf_counter()
        page.goto(f"{self.url}/workflows/wf/tasks/{task}/jobs/{job}")
        page.wait_for_selector("#earlier:not([hidden])")
        page.wait_for_selector("#log .ln:has-text('line 070000 ')")
        took = time.perf_counter() - t0
        page.context.close()
        return took

    def task_page_weight(self, task: int) -> tuple[int, int]:
        page = self.page()
        sizes: list[int] = []

        def count(response: Response) -> None:
            try:
                sizes.append(len(response.body()))
            except Exception:  # a redirect has no body
                sizes.append(0)

        page.on("response", count)
        page.goto(f"{self.url}/workflows/wf/tasks/{task}")
        page.wait_for_selector(".attempt .job .status")
        page.wait_for_load_state("networkidle")
        page.context.close()
        return sum(sizes), len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium (Debian: apt-get install chromium)")
    home = Path(tempfile.mkdtemp(prefix="conveyor-bench-web-"))
    subprocess.run(["git", "init", "-q", "-b", "main", str(home / "app")], check=True)
    subprocess.run(
        ["git", "-C", str(home / "app"), "-c", "user.name=b", "-c", "user.email=b@b",
         "commit", "-q", "--allow-empty", "-m", "initial"], check=True,
    )  # fmt: skip
    port = free_port()
    config = home / "conveyor.yaml"
    config.write_text(CONFIG.format(port=port, home=home))
    proc, url, token = serve_with_token(config, port, home / "log")
    try:
        with sync_playwright() as p:
            args_ = ["--no-sandbox"] if os.geteuid() == 0 else []
            browser = p.chromium.launch(executable_path=chromium, args=args_)
            bench = Bench(home, browser, url, token)
            big = bench.create("big")
            big_job = bench.job_when(big, {"passed"})
            size = int(
                bench.api.get(
                    f"/api/workflows/wf/tasks/{big}/jobs/{big_job['id']}/log?before=end"
                ).headers["X-Log-Size"]
            )
            opened, lags, usable = [], [], []
            for _ in range(args.rounds):
                o, lag = bench.first_line_of_a_running_log()
                opened.append(o * 1000)
                lags += lag
                usable.append(bench.big_log_usable(big, big_job["id"]) * 1000)
            weight, requests = bench.task_page_weight(big)
            browser.close()
    finally:
        stop([proc])
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"chromium headless; {args.rounds} rounds")  # fmt: skip
    print("| measure | p50 | p99 |")
    print("|---|---:|---:|")
    print(f"| open a running job's log -> first line shown (ms) | {statistics.median(opened):.0f} "
          f"| {pct(opened, 99):.0f} |")  # fmt: skip
    print(f"| a line written -> shown on an open log page (ms, {len(lags)} lines) "
          f"| {statistics.median(lags):.0f} | {pct(lags, 99):.0f} |")  # fmt: skip
    print(f"| open a finished {size / 1e6:.1f} MB log -> usable (ms) "
          f"| {statistics.median(usable):.0f} | {pct(usable, 99):.0f} |")  # fmt: skip
    print(f"| task page weight | {weight / 1024:.1f} KiB in {requests} requests | |")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
