"""The web UI's pages: static shells; data only through the authenticated API."""

import pytest
from fastapi.testclient import TestClient

PAGES = {
    "/": "home.js",
    "/workflows/autoproject-workflow-dev": "workflow.js",
    "/workflows/autoproject-workflow-dev/run": "run.js",
    "/workflows/autoproject-workflow-dev/tasks/7": "task.js",
    "/workflows/autoproject-workflow-dev/tasks/7/jobs/3": "log.js",
}
SCRIPTS = ["common.js", "ansi.js", "home.js", "workflow.js", "run.js", "task.js", "log.js"]


@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_a_shell_without_data_under_a_strict_policy(
    client: TestClient, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"
    assert '<script src="/static/common.js" defer></script>' in r.text
    assert f'<script src="/static/{PAGES[path]}" defer></script>' in r.text
    # Nothing from the address is echoed back: the page is the same for every workflow.
    assert "autoproject" not in r.text
    assert r.text == client.get(path.replace("autoproject-workflow-dev", "other")).text


def test_scripts_and_styles_are_served_and_nothing_else(client: TestClient) -> None:
    for name in SCRIPTS:
        js = client.get(f"/static/{name}")
        assert js.status_code == 200, name
        assert js.headers["content-type"].startswith("text/javascript")
        # Text only, so task data and logs can never become markup; no token kept.
        assert "innerHTML" not in js.text and "insertAdjacentHTML" not in js.text, name
        assert "localStorage" not in js.text and "sessionStorage" not in js.text, name
    assert "/api/session" in client.get("/static/common.js").text
    assert client.get("/static/ui.css").status_code == 200
    for path in ("/static/../settings.py", "/static/routes.py", "/static/layout.html"):
        assert client.get(path).status_code == 404


def test_an_unknown_page_is_an_html_404_and_an_unknown_api_path_stays_json(
    client: TestClient,
) -> None:
    page = {"Accept": "text/html,application/xhtml+xml"}
    for path in ("/nope/at/all", "/workflows/wf/tasks/abc", "/workflows/wf/tasks/1/jobs/x"):
        r = client.get(path, headers=page)
        assert (r.status_code, r.headers["content-type"]) == (404, "text/html; charset=utf-8")
        assert "Not found" in r.text and 'href="/"' in r.text
        assert r.headers["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"
    for path in ("/api/nope", "/static/nope.js"):
        r = client.get(path, headers=page)
        assert (r.status_code, r.json()["resultCode"]) == (404, 404), path
    # A client that does not ask for HTML gets the API's JSON body anywhere.
    assert client.get("/nope/at/all").json()["detail"] == "no such path: GET /nope/at/all"


def test_docs_and_redoc_load_only_conveyors_own_files(client: TestClient) -> None:
    for page, assets in (
        ("/docs", ["/static/vendor/swagger-ui-bundle.js", "/static/vendor/swagger-ui.css"]),
        ("/redoc", ["/static/vendor/redoc.standalone.js"]),
    ):
        html = client.get(page).text
        # Nothing from another origin: the pages work offline, and leak nothing.
        assert "http://" not in html and "https://" not in html, page
        for asset in assets:
            assert asset in html
            r = client.get(asset)
            assert r.status_code == 200, asset
            assert len(r.content) > 100_000
    assert client.get("/favicon.ico").headers["content-type"] == "image/png"
    assert client.get("/static/vendor/README.md").status_code == 404
