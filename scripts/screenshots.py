"""Screenshots of the web UI's main pages for docs/screenshots/, taken with Debian's
chromium against a running server (the demo of `make run`, say):

    .venv/bin/python scripts/screenshots.py http://127.0.0.1:8080 "$(cat .demo/token)"

It starts one task of the first workflow and waits for it to end, so the pages have
something to show.
"""

import shutil
import sys
import time
from pathlib import Path

import httpx2 as httpx
from playwright.sync_api import Page, sync_playwright

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def start_task(api: httpx.Client) -> tuple[str, int, int]:
    """(workflow, task id, first job id) of a task it started and waited for."""
    workflow = api.get("/api/workflows").raise_for_status().json()[0]
    name = workflow["name"]
    detail = api.get(f"/api/workflows/{name}").raise_for_status().json()
    body = {
        "workflow_name": name,
        "env_name": detail["env"],
        "targets": [{"name": s["name"], "build": {"repos": []}} for s in detail["services"]],
    }
    created = api.post("/api/directory/workflowTask/create", json=body).raise_for_status().json()
    task_id = created["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        task = api.get(f"/api/workflows/{name}/tasks/{task_id}").json()
        if task["status"] in ("passed", "failed", "timeout", "cancelled"):
            return name, task_id, task["jobs"][0]["id"]
        time.sleep(0.2)
    raise SystemExit(f"task {name}#{task_id} did not end in 2 minutes")


def shoot(page: Page, url: str, name: str, ready: str) -> None:
    page.goto(url)
    page.wait_for_selector(ready)
    page.wait_for_timeout(300)  # let live times settle before the picture
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print(f"docs/screenshots/{name}.png")


def main() -> None:
    base, token = sys.argv[1].rstrip("/"), sys.argv[2]
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    workflow, task, job = start_task(api)
    OUT.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for width, suffix in ((1100, ""), (390, "-390px")):
            context = browser.new_context(viewport={"width": width, "height": 700})
            context.request.post(f"{base}/api/session", data={"token": token})
            page = context.new_page()
            task_url = f"{base}/workflows/{workflow}/tasks/{task}"
            shoot(page, f"{base}/", f"workflows{suffix}", "#workflows tbody tr")
            shoot(page, f"{base}/workflows/{workflow}", f"tasks{suffix}", "#tasks tbody tr")
            shoot(page, task_url, f"task{suffix}", ".attempt .job .status")
            shoot(page, f"{task_url}/jobs/{job}", f"log{suffix}", "#ended:not([hidden])")
            shoot(page, f"{base}/workflows/{workflow}/run", f"run{suffix}", "#run:not([hidden])")
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
