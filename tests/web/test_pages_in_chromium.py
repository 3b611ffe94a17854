"""The web UI in a real browser: Debian's chromium driven by Playwright, against a real
`conveyor serve` (SQLite, local executor) building a real git repository.

Every test also checks what a person never sees: no request leaves 127.0.0.1 and the
console shows no error beyond the ones a test expects (a refused token is a 401)."""

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from tests.conftest import PG_URL, GitRepo
from tests.server import Server, free_port

pytestmark = pytest.mark.skipif(
    bool(PG_URL), reason="the pages read the same API on either database: covered by the SQLite run"
)

CONFIG = """
public_url: http://127.0.0.1:{port}
database_url: sqlite:///{home}/conveyor.db
data_dir: {home}/data
executor: local
gitlab: {{url: "https://gitlab.example.com"}}
repos:
  app: {{url: "{app}", default_branch: main, gitlab_project: demo/app}}
services:
  svc:
    build:
      repos: [app]
      variables: {{MODE: quick}}
      script: |
        case "$MODE" in
          colours)
            printf '\\033[1;32mgreen bold\\033[0m plain \\033[38;5;208morange\\033[0m\\n'
            printf 'ünïcödé ✓ 日本語\\n'
            printf 'progress 10%%\\rprogress 55%%\\rprogress 100%%\\n'
            printf 'sgr0 as tput writes it:\\033(B\\033[m plain\\n'
            printf 'two returns\\r\\r\\n' ;;
          fail) echo "about to fail"; exit 3 ;;
          slow)
            i=0
            until [ -e "{gates}/stop-$CONVEYOR_TASK_ID" ]; do
              i=$((i+1)); echo "tick $i"; sleep 0.2
            done ;;
          euro)
            until [ -e "{gates}/go-$CONVEYOR_TASK_ID" ]; do sleep 0.05; done
            for n in $(seq -w 1 30000); do echo "$n €€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€"; done ;;
          *) echo "quick build" ;;
        esac
    deploy: {{script: echo deployed}}
envs:
  dev: {{}}
workflows:
  wf: {{env: dev, services: [svc], parallel: true}}
roles:
  admin: {{permissions: [task:view, task:create, task:restart, task:cancel], workflows: ["*"]}}
"""
WIDE = {"width": 1280, "height": 900}
# What a browser reports for a response it was meant to get: a refused token's 401.
UNAUTHORIZED = "the server responded with a status of 401"


class Ui:
    """The server, a token for it, and API calls to set the scene."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.gates = home / "gates"
        self.gates.mkdir()
        app = GitRepo(home / "app")
        port = free_port()
        config = home / "conveyor.yaml"
        config.write_text(CONFIG.format(port=port, home=home, app=app.url, gates=self.gates))
        self.server = Server(config, port, home / "server.log")
        self.server.start()
        self.token = self.server.issue_token()
        self.url = self.server.url
        self.api = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def create(self, mode: str = "quick") -> int:
        body = {
            "workflow_name": "wf",
            "env_name": "dev",
            "targets": [
                {"name": "svc", "build": {"repos": []}, "envs": [{"key": "MODE", "value": mode}]}
            ],
        }
        r = self.api.post("/api/directory/workflowTask/create", json=body)
        assert r.status_code == 200, r.text
        task_id: int = r.json()["task_id"]
        return task_id

    def task(self, task_id: int) -> dict[str, object]:
        found: dict[str, object] = self.api.get(f"/api/workflows/wf/tasks/{task_id}").json()
        return found

    def wait(self, task_id: int, statuses: set[str]) -> None:
        """Until the task's status is one of `statuses`, asking the API as a client would."""
        event = threading.Event()
        for _ in range(600):
            if self.task(task_id)["status"] in statuses:
                return
            event.wait(0.05)
        raise AssertionError(f"task {task_id} never became {statuses}")

    def release(self, gate: str, task_id: int) -> None:
        (self.gates / f"{gate}-{task_id}").touch()

    def task_url(self, task_id: int) -> str:
        return f"{self.url}/workflows/wf/tasks/{task_id}"

    def close(self) -> None:
        self.api.close()
        self.server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (CI=true needs it: apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        # As root chromium refuses its own sandbox; the test pages are our own.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = p.chromium.launch(executable_path=path, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    found = Ui(tmp_path_factory.mktemp("ui"))
    yield found
    found.close()


class Watch:
    """What a browser context did that a person would not see."""

    def __init__(self, context: BrowserContext) -> None:
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        self.expected: list[str] = []
        context.on("request", lambda r: self.hosts.add(urlsplit(r.url).hostname or r.url))
        context.on("page", self.page)

    def page(self, page: Page) -> None:
        page.on("console", self.console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(e in message.text for e in self.expected):
            self.errors.append(message.text)


@pytest.fixture
def watch() -> list[Watch]:
    return []


@pytest.fixture
def browse(chromium: Browser, ui: Ui, watch: list[Watch]) -> Iterator[Callable[..., Page]]:
    """A page in a fresh browser context; signed in unless told otherwise."""
    contexts: list[BrowserContext] = []

    def open_page(signed_in: bool = True, viewport: dict[str, int] = WIDE) -> Page:
        context = chromium.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        watch.append(Watch(context))
        if signed_in:
            r = context.request.post(f"{ui.url}/api/session", data={"token": ui.token})
            assert r.ok, r.text()
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
    for w in watch:
        assert w.hosts <= {"127.0.0.1"}, f"requests left 127.0.0.1: {w.hosts}"
        assert w.errors == []


def test_a_wrong_token_says_why_and_a_good_one_shows_the_workflows(
    browse: Callable[..., Page], ui: Ui, watch: list[Watch]
) -> None:
    page = browse(signed_in=False)
    watch[0].expected.append(UNAUTHORIZED)
    page.goto(ui.url)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "cvy_" + "A" * 43)
    page.click("#login button")
    expect(page.locator("#login-error")).to_have_text("Sign-in failed: unknown token")
    page.fill("#token", "not a token")
    page.click("#login button")
    expect(page.locator("#login-error")).to_have_text("Sign-in failed: malformed token")
    page.fill("#token", ui.token)
    page.click("#login button")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#workflows tbody tr").first).to_contain_text("wf")
    expect(page.locator("#who-name")).to_have_text("alice")
    # The token was exchanged for a cookie the page's scripts cannot read.
    assert page.evaluate("document.cookie") == ""
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_be_hidden()


def test_the_workflow_list_leads_to_its_tasks_filtered_by_status(
    browse: Callable[..., Page], ui: Ui
) -> None:
    passed, failed = ui.create(), ui.create("fail")
    ui.wait(passed, {"passed"})
    ui.wait(failed, {"failed"})
    page = browse()
    page.goto(ui.url)
    expect(page).to_have_title("Workflows — Conveyor")
    row = page.locator("#workflows tbody tr", has_text="wf")
    expect(row.locator(".latest")).to_contain_text(f"#{failed} failed")
    expect(row.locator(".actions a")).to_have_text("Run")
    row.locator("a", has_text="wf").click()
    expect(page).to_have_title("wf — Conveyor")
    expect(page.locator(f'#tasks tr[data-key="{passed}"] .status')).to_have_text("passed")
    expect(page.locator(f'#tasks tr[data-key="{failed}"] .status')).to_have_text("failed")
    page.select_option("#status", "failed")
    page.click("#filters button")
    expect(page.locator(f'#tasks tr[data-key="{failed}"]')).to_be_visible()
    expect(page.locator(f'#tasks tr[data-key="{passed}"]')).to_have_count(0)
    assert "status=failed" in page.url


def test_a_running_tasks_log_grows_on_the_page_and_cancel_stops_it(
    browse: Callable[..., Page], ui: Ui
) -> None:
    task = ui.create("slow")
    page = browse()
    page.goto(ui.task_url(task))
    expect(page).to_have_title(re.compile(rf"^wf #{task} · (created|running) — Conveyor$"))
    expect(page.locator("#status")).to_have_text("running")
    commit = page.locator("#commits tbody tr").first
    expect(commit.locator("a").last).to_have_attribute(
        "href", re.compile(r"^https://gitlab\.example\.com/demo/app/-/commit/[0-9a-f]{40}$")
    )
    page.locator(".job.build .log-link").click()
    log = page.locator("#log")
    expect(log).to_contain_text("tick 1")
    expect(log).to_contain_text("tick 6")  # written after the page opened: it follows
    page.go_back()
    expect(page.locator("#restart")).to_be_hidden()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#restart")).to_be_visible()
    assert ui.task(task)["status"] == "cancelled"


def test_restarting_a_failed_task_from_its_page_shows_attempt_2(
    browse: Callable[..., Page], ui: Ui
) -> None:
    task = ui.create("fail")
    ui.wait(task, {"failed"})
    page = browse()
    page.goto(ui.task_url(task))
    attempt1 = page.locator(".attempt", has_text="Attempt 1")
    expect(attempt1.locator(".job.build")).to_contain_text("script exited with 3")
    expect(attempt1.locator(".job.deploy .status")).to_have_text("skipped")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#restart")
    attempt2 = page.locator(".attempt", has_text="Attempt 2")
    expect(attempt2.locator(".who")).to_contain_text("restarted by alice")
    expect(page.locator("#status")).to_have_text("failed")
    expect(attempt2.locator(".job.build .status")).to_have_text("failed")
    expect(attempt1.locator(".job.build .status")).to_have_text("failed")  # history kept


def test_a_log_renders_colours_progress_lines_and_utf8(browse: Callable[..., Page], ui: Ui) -> None:
    task = ui.create("colours")
    ui.wait(task, {"passed"})
    page = browse()
    page.goto(ui.task_url(task))
    page.locator(".job.build .log-link").click()
    expect(page.locator("#ended")).to_be_visible()
    expect(page).to_have_title(f"build svc, attempt 1 · wf #{task} — Conveyor")
    green = page.locator("#log span", has_text="green bold")
    expect(green).to_have_class("b f2")
    expect(page.locator("#log span", has_text="orange")).to_have_css("color", "rgb(255, 135, 0)")
    text = page.locator("#log").inner_text()
    assert "ünïcödé ✓ 日本語" in text
    assert "progress 100%" in text and "progress 10%" not in text and "progress 55%" not in text
    assert "\x1b" not in text and "[0m" not in text
    assert "sgr0 as tput writes it: plain\n" in text  # ESC ( B, not a stray "B"
    assert "two returns\n" in text
    expect(page.locator("#log .ln .no").first).to_have_attribute("data-n", "1")
    assert page.get_attribute("#raw", "href", timeout=1000) == (
        f"/api/workflows/wf/tasks/{task}/jobs/{ui.task(task)['jobs'][0]['id']}/log/raw"  # type: ignore[index]
    )


def test_utf8_stays_whole_where_pieces_meet_and_a_long_log_shows_its_tail_first(
    browse: Callable[..., Page], ui: Ui
) -> None:
    task = ui.create("euro")
    page = browse()
    page.goto(ui.task_url(task))
    page.locator(".job.build .log-link").click()
    expect(page.locator("#log")).to_contain_text("checking out app")
    ui.release("go", task)  # 3 MB of three-byte characters, read in 1 MiB pieces
    expect(page.locator("#ended")).to_be_visible(timeout=30_000)
    text = page.locator("#log").inner_text()
    assert "\ufffd" not in text
    assert "30000 " + "€" * 31 in text
    last = int(page.locator("#log .ln .no").last.get_attribute("data-n") or 0)

    page.reload()  # now a finished 3 MB log: its tail first, the rest on demand
    expect(page.locator("#earlier")).to_be_visible()
    lines = page.locator("#log .ln")
    expect(lines.last.locator(".no")).to_have_attribute("data-n", str(last))
    shown = lines.count()
    assert shown < 5000
    first = int(lines.first.locator(".no").get_attribute("data-n") or 0)
    page.click("#earlier")
    expect(lines.first.locator(".no")).not_to_have_attribute("data-n", str(first))
    new_first = int(lines.first.locator(".no").get_attribute("data-n") or 0)
    assert lines.count() == shown + (first - new_first)  # numbered on, no line lost
    assert "\ufffd" not in page.locator("#log").inner_text()


def test_pages_fit_390_pixels_and_keep_focus_across_live_updates(
    browse: Callable[..., Page], ui: Ui
) -> None:
    task = ui.create("slow")
    ui.wait(task, {"running"})
    page = browse(viewport={"width": 390, "height": 844})
    job = ui.task(task)["jobs"][0]["id"]  # type: ignore[index]
    for path in ("/", "/workflows/wf", f"/workflows/wf/tasks/{task}",
                 f"/workflows/wf/tasks/{task}/jobs/{job}", "/workflows/wf/run"):  # fmt: skip
        page.goto(ui.url + path)
        expect(page.locator("#content h1")).not_to_be_empty()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"
    page.goto(ui.task_url(task))
    expect(page.locator("#cancel")).to_be_visible()
    page.focus("#cancel")
    with page.expect_response(re.compile(rf"/api/workflows/wf/tasks/{task}$")):
        pass  # the page's next live update
    assert page.evaluate("document.activeElement.id") == "cancel"
    ui.release("stop", task)


def test_the_run_form_starts_a_task_through_the_create_call(
    browse: Callable[..., Page], ui: Ui, watch: list[Watch]
) -> None:
    page = browse()
    watch[0].expected.append("the server responded with a status of 400")
    page.goto(f"{ui.url}/workflows/wf")
    page.click("#run")
    expect(page).to_have_title("Run wf — Conveyor")
    expect(page.locator("#svc--app--branch")).to_have_value("main")
    expect(page.locator("#svc--var--MODE")).to_have_value("quick")
    page.fill("#svc--var--MODE", "colours")
    page.fill("#svc--app--branch", "no-such-branch")
    page.click("#run button[type=submit]")
    expect(page.locator("#run-error")).to_contain_text("no-such-branch")
    page.fill("#svc--app--branch", "main")
    page.click("#run button[type=submit]")
    page.wait_for_url(re.compile(r"/workflows/wf/tasks/\d+$"))
    task = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#status")).to_have_text("passed")
    jobs = ui.task(task)["jobs"]
    log = ui.api.get(jobs[0]["log_url"]).text  # type: ignore[index]
    assert "green bold" in log  # the variable reached the build


def test_a_log_page_says_the_server_is_away_and_carries_on_when_it_is_back(
    browse: Callable[..., Page], ui: Ui, watch: list[Watch]
) -> None:
    task = ui.create("slow")
    ui.wait(task, {"running"})
    job = ui.task(task)["jobs"][0]["id"]  # type: ignore[index]
    page = browse()
    watch[0].expected.append("ERR_CONNECTION_REFUSED")
    page.goto(f"{ui.url}/workflows/wf/tasks/{task}/jobs/{job}")
    expect(page.locator("#log")).to_contain_text("tick 2")
    ui.server.stop()
    expect(page.locator("#banner")).to_contain_text("cannot be reached")
    ui.server.start()
    expect(page.locator("#banner")).to_be_hidden(timeout=15_000)
    # What became of the job while the server was away reaches the page, to its end.
    expect(page.locator("#ended")).to_be_visible(timeout=15_000)
    status = ui.task(task)["jobs"][0]["status"]  # type: ignore[index]
    expect(page.locator("#status")).to_have_text(str(status))
    assert "\ufffd" not in page.locator("#log").inner_text()
