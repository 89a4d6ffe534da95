"""The dashboard's server side: one HTML shell at every page URL, its embedded settings, assets, CSP."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
PAGES = [
    "/horizon", "/horizon/", "/horizon/dashboard", "/horizon/monitoring", "/horizon/monitoring/team:ops/blue",
    "/horizon/metrics/jobs", "/horizon/metrics/queues", "/horizon/metrics/jobs/tests.add",
    "/horizon/jobs/recent", "/horizon/jobs/pending", "/horizon/jobs/completed", "/horizon/jobs/silenced",
    "/horizon/jobs/failed", "/horizon/jobs/0b7c8a36-1f5e-4d7e-9a51-7f3d3f2b9c10",
    "/horizon/failed/0b7c8a36-1f5e-4d7e-9a51-7f3d3f2b9c10", "/horizon/queues", "/horizon/queues/emails",
]


def _client(hz, **web):
    from horizon.context import Horizon
    from web import create_app

    settings = hz.settings
    if web:
        settings = settings.with_overrides(web=dataclasses.replace(settings.web, **web))
    return create_app(settings, Horizon(settings, client=hz.redis)).test_client()


def _config(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="horizon-config">(.*?)</script>', html, re.S)
    assert match, "no embedded config block"
    return json.loads(match.group(1))


@pytest.mark.parametrize("url", PAGES)
def test_every_page_url_serves_the_shell(hz, url: str) -> None:
    response = _client(hz).get(url)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<script type="module" src="/horizon/static/js/app.js">' in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


def test_shell_has_no_inline_executable_script(hz) -> None:
    html = _client(hz).get("/horizon/").get_data(as_text=True)
    for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in attrs or 'type="application/json"' in attrs, attrs
        assert "src=" not in attrs or not body.strip()
    assert not re.search(r"\son[a-z]+=", html), "inline event handler in the shell"


def test_embedded_config_follows_settings(hz) -> None:
    assert _config(_client(hz).get("/horizon/").get_data(as_text=True)) == {
        "path": "/horizon", "api": "/horizon/api", "static": "/horizon/static",
        "token_required": False, "read_only": False,
    }
    client = _client(hz, read_only=True, auth=dataclasses.replace(hz.settings.web.auth, token="t0k</script>"))
    html = client.get("/horizon/jobs/failed").get_data(as_text=True)
    config = _config(html)
    assert config["token_required"] is True and config["read_only"] is True
    assert "t0k" not in html, "the token itself never reaches the page"


def test_shell_at_another_path(hz) -> None:
    client = _client(hz, path="/ops/queues")
    html = client.get("/ops/queues/jobs/recent").get_data(as_text=True)
    assert _config(html)["api"] == "/ops/queues/api"
    assert client.get("/ops/queues/static/js/app.js").status_code == 200


def test_static_assets_are_served(hz) -> None:
    client = _client(hz)
    for path in ["js/app.js", "js/pages/metrics.js", "css/dashboard.css", "vendor/chart.umd.min.js"]:
        response = client.get(f"/horizon/static/{path}")
        assert response.status_code == 200, path
        response.close()
    assert client.get("/horizon/static/js/app.js").mimetype in {"text/javascript", "application/javascript"}


def test_unknown_api_route_is_not_the_shell(hz) -> None:
    response = _client(hz).get("/horizon/api/no-such-route")
    assert response.status_code == 404
    assert response.is_json


def test_scripts_never_parse_data_as_html() -> None:
    offenders = []
    for path in (STATIC / "js").rglob("*.js"):
        text = path.read_text()
        for pattern in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            if pattern in text:
                offenders.append(f"{path.name}: {pattern}")
    assert offenders == []


def test_vendored_chart_version_is_recorded() -> None:
    head = (STATIC / "vendor" / "chart.umd.min.js").read_text()[:200]
    version = re.search(r"Chart\.js v(\d+\.\d+\.\d+)", head).group(1)
    readme = (STATIC / "vendor" / "README.md").read_text()
    assert f"| {version} |" in readme
    assert "MIT License" in (STATIC / "vendor" / "chart.js.LICENSE.md").read_text()
