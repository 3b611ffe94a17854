"""The task page: a static shell; task data only through the authenticated API."""

from fastapi.testclient import TestClient


def test_the_page_a_task_url_points_at_is_served_without_data(client: TestClient) -> None:
    r = client.get("/workflows/autoproject-workflow-dev/tasks/7")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"
    assert '<script src="/static/task.js" defer></script>' in r.text
    # Nothing from the address is echoed back: the page is the same for every task.
    assert "autoproject" not in r.text
    assert r.text == client.get("/workflows/other/tasks/1").text


def test_its_script_and_styles_are_served_and_nothing_else(client: TestClient) -> None:
    js = client.get("/static/task.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    # It signs in through the session endpoint and keeps the token nowhere.
    assert "/api/session" in js.text
    assert "localStorage" not in js.text
    assert "innerHTML" not in js.text  # text only, so task data cannot become markup
    assert client.get("/static/task.css").status_code == 200
    for path in ("/static/../settings.py", "/static/routes.py", "/static/task.html"):
        assert client.get(path).status_code == 404


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
