"""Errors and access (SPEC 9.3): envelopes, token, read-only, audit log, CSP, bind refusal, mounting."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from horizon.config import WebAuthSettings
from tests import sample_jobs
from tests.api_fixtures import API, assert_error
from web import create_app

TOKEN = "s3cret-token"


def make_app(hz, **web):
    settings = replace(hz.settings, web=replace(hz.settings.web, **web))
    return create_app(settings, hz)


def test_every_error_is_an_envelope(hz):
    app = make_app(hz)

    @app.get(API + "/boom")
    def boom():
        raise RuntimeError("secret internals")

    client = app.test_client()
    assert_error(client.get(API + "/no/such/route"), 404, "NOT_FOUND")
    assert_error(client.get("/elsewhere"), 404, "NOT_FOUND")
    for path in ("/queues/%2F/events", "/queues///events", "//stats", "/jobs//retry"):
        assert_error(client.get(API + path), 404, "NOT_FOUND")  # not a redirect to a merged path
    response = client.delete(API + "/stats")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]
    assert_error(client.get(API + "/jobs/recent?starting_at=abc"), 400, "BAD_REQUEST")
    assert_error(client.get(API + "/jobs/recent?limit=ten"), 400, "BAD_REQUEST")
    assert_error(client.post(API + "/monitoring", data="{oops"), 400, "BAD_REQUEST")
    assert_error(client.post(API + "/monitoring", json={"tag": 5}), 400, "BAD_REQUEST")
    assert "secret internals" not in assert_error(client.get(API + "/boom"), 500, "INTERNAL")


def test_a_page_of_another_site_cannot_change_things_without_a_token(hz):
    """With no token (the loopback default), a page the operator opens could POST to the API on
    127.0.0.1 (a form needs no CORS permission) or open the JSON-RPC websocket. Before, such a
    text/plain form POST created a cli job. Now a mutating call or the websocket upgrade from
    another Origin is a 403; the dashboard's own pages, curl and scripts (no Origin) go on."""
    client = make_app(hz).test_client()
    tag = {"data": '{"tag": "csrf"}', "content_type": "text/plain"}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://localhost.evil.example"}):
        message = assert_error(client.post(API + "/monitoring", headers=headers, **tag), 403, "FORBIDDEN")
        assert "cross-site request refused" in message
    assert client.get(API + "/monitoring").get_json() == []  # nothing was monitored
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "https://evil.example"}
    assert_error(client.get("/horizon/rpc", headers=upgrade), 403, "FORBIDDEN")
    assert client.get(API + "/stats", headers={"Origin": "https://evil.example"}).status_code == 200  # reads
    assert client.post(API + "/monitoring", headers={"Origin": "http://localhost"}, **tag).status_code == 201
    assert client.post(API + "/monitoring", data='{"tag": "curl"}').status_code == 201  # no Origin
    proxied = {"Origin": "https://horizon.example.com", "X-Forwarded-Host": "horizon.example.com"}
    assert client.post(API + "/monitoring", headers=proxied, data='{"tag": "proxied"}').status_code == 201
    # with a token in force a foreign page cannot send it: the Origin is not judged
    tokened = make_app(hz, auth=WebAuthSettings(token=TOKEN)).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://elsewhere.example"}
    assert tokened.post(API + "/monitoring", headers=auth, data='{"tag": "tokened"}').status_code == 201


def test_token_missing_wrong_right(hz):
    client = make_app(hz, auth=WebAuthSettings(token=TOKEN)).test_client()
    assert "token" in assert_error(client.get(API + "/queues"), 401, "UNAUTHORIZED")
    assert_error(client.get(API + "/queues", headers={"Authorization": "Bearer wrong"}), 401, "UNAUTHORIZED")
    assert_error(client.get(API + "/queues", headers={"Authorization": f"Basic {TOKEN}"}), 401, "UNAUTHORIZED")
    assert client.get(API + "/queues", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert_error(client.get("/horizon/metrics"), 401, "UNAUTHORIZED")
    job_id = sample_jobs.noop.dispatch()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post(f"{API}/jobs/{job_id}/cancel", headers=auth).status_code == 200


def test_read_only_refuses_mutations(hz, caplog):
    client = make_app(hz, read_only=True).test_client()
    job_id = sample_jobs.noop.dispatch()
    caplog.set_level(logging.INFO, logger="horizon.audit")
    for method, path in [
        ("post", "/jobs"),
        ("post", f"/jobs/{job_id}/cancel"),
        ("delete", f"/jobs/{job_id}"),
        ("post", f"/jobs/retry/{job_id}"),
        ("post", "/queues/default/pause"),
        ("post", "/monitoring"),
        ("delete", "/monitoring/x"),
    ]:
        assert "read-only" in assert_error(getattr(client, method)(API + path), 403, "FORBIDDEN")
    assert client.get(f"{API}/jobs/{job_id}").status_code == 200
    assert hz.redis.hget(hz.keys.job(job_id), "status") == "pending"
    assert len([r for r in caplog.records if r.name == "horizon.audit"]) == 7


def test_audit_line_for_each_mutating_call(hz, caplog):
    client = make_app(hz, auth=WebAuthSettings(token=TOKEN)).test_client()
    caplog.set_level(logging.INFO, logger="horizon.audit")
    client.get(API + "/stats", headers={"Authorization": f"Bearer {TOKEN}"})
    client.post(API + "/queues/default/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    (record,) = [r for r in caplog.records if r.name == "horizon.audit"]
    line = record.getMessage()
    assert "who=127.0.0.1" in line and "what=POST /horizon/api/queues/default/pause" in line
    assert "status=200" in line and "when=" in line and TOKEN not in line and "token=" in line


def test_csp_on_pages_and_dashboard_without_token(hz):
    client = make_app(hz, auth=WebAuthSettings(token=TOKEN)).test_client()
    page = client.get("/horizon/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_mounted_under_another_wsgi_app(hz):
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.test import Client

    outer = Flask("outer")
    outer.add_url_rule("/", "home", lambda: "home")
    outer.wsgi_app = DispatcherMiddleware(outer.wsgi_app, {"/ops/horizon": create_app(hz.settings, hz, mounted=True)})
    client = Client(outer)
    assert client.get("/").get_data(as_text=True) == "home"
    response = client.get("/ops/horizon/api/queues")
    assert response.status_code == 200 and response.get_json() == []
    job = client.post("/ops/horizon/api/jobs", json={"name": "tests.noop"})
    assert job.status_code == 201 and job.headers["Location"].startswith("/ops/horizon/api/jobs/")
    spec = client.get("/ops/horizon/api/openapi.json").get_json()
    assert spec["servers"][0]["url"].endswith("/ops/horizon/api")


@pytest.mark.parametrize(
    ("bind", "auth", "ok"),
    [
        ("127.0.0.1:8080", {}, True),
        ("[::1]:8080", {}, True),
        ("localhost:8080", {}, True),
        ("0.0.0.0:8080", {}, False),
        ("10.1.2.3:8080", {}, False),
        ("0.0.0.0:8080", {"token": TOKEN}, True),
        ("0.0.0.0:8080", {"disabled": True}, True),
    ],
)
def test_bind_check(hz, bind, auth, ok):
    from web.server import BindRefused, check_bind

    settings = replace(hz.settings, web=replace(hz.settings.web, bind=bind, auth=WebAuthSettings(**auth)))
    if ok:
        assert check_bind(settings) == bind
    else:
        with pytest.raises(BindRefused, match="web.auth.token"):
            check_bind(settings)
