"""API extensions for jobs (SPEC 9.2): POST jobs, idempotency, continuations, cancel, delete."""

from __future__ import annotations

import json

import pytest

from tests import sample_jobs
from tests.api_fixtures import API, app, assert_error, client, get, post  # noqa: F401  (fixtures)


def create(client, body, status=201, **kwargs):  # noqa: F811
    response = client.post(f"{API}/jobs", data=json.dumps(body), content_type="application/json", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def test_post_named_job_201_location_and_defaults(hz, client):  # noqa: F811
    body = {"name": "tests.add", "args": ["k", 1, 2], "queue": "emails", "tries": 3, "timeout": 5,
            "backoff": [1, 2], "tags": ["vip"]}  # fmt: skip
    response = create(client, body)
    job = response.get_json()
    assert response.headers["Location"] == f"{API}/jobs/{job['id']}"
    assert job["status"] == "pending" and job["queue"] == "emails" and job["tags"] == ["vip"]
    assert job["payload"] == {"args": ["k", 1, 2], "kwargs": {}}
    h = hz.redis.hgetall(hz.keys.job(job["id"]))
    assert (h["tries"], float(h["timeout"]), json.loads(h["backoff"])) == ("3", 5.0, [1.0, 2.0])
    assert hz.redis.lrange(hz.keys.queue("emails"), 0, -1) == [job["id"]]
    auto = create(client, {"name": "tests.record", "args": ["user-9"]}).get_json()
    assert auto["tags"] == ["key:user-9"]  # the job's automatic tags


def test_delay_and_run_at_make_scheduled_jobs(hz, client):  # noqa: F811
    delayed = create(client, {"name": "tests.noop", "delay": 60}).get_json()
    assert delayed["status"] == "scheduled"
    at = create(client, {"name": "tests.noop", "run_at": "2099-01-01T00:00:00Z"}).get_json()
    assert at["status"] == "scheduled"
    assert hz.redis.zscore(hz.keys.delayed("default"), at["id"]) == pytest.approx(4070908800)
    past = create(client, {"name": "tests.noop", "run_at": "2000-01-01T00:00:00+00:00"}).get_json()
    assert past["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"args": []}, "exactly one"),
        ({"name": "tests.noop", "type": "http"}, "exactly one"),
        ({"name": "tests.noop", "args": "x"}, "args must be a list"),
        ({"name": "tests.noop", "kwargs": []}, "kwargs must be an object"),
        ({"name": "tests.noop", "tries": "3"}, "tries must be an integer"),
        ({"name": "tests.noop", "tries": 0}, "tries must be between"),
        ({"name": "tests.noop", "delay": -1}, "delay must be between"),
        ({"name": "tests.noop", "delay": 1, "run_at": "2099-01-01T00:00:00"}, "delay or run_at"),
        ({"name": "tests.noop", "run_at": "tomorrow"}, "ISO 8601"),
        ({"name": "tests.noop", "tags": "x"}, "tags must be a list"),
        ({"name": "tests.noop", "bogus": 1}, "unknown field(s) bogus"),
        ({"type": "http", "http": {"url": "ftp://x"}}, "http.url"),
        ({"type": "ftp"}, 'type must be "http" or "cli"'),
        # before: 201, with a job that could never run, or skipping the built-in type's checks
        ({"name": "tests.noop", "run_at": float("inf")}, "run_at must be from"),
        ({"name": "tests.noop", "run_at": 1e300}, "run_at must be from"),
        ({"name": "horizon.http", "kwargs": {"url": "http://x"}}, 'built-in job type: send {"type": "http"'),
        ({"name": "horizon.cli", "kwargs": {"argv": ["true"]}}, 'built-in job type: send {"type": "cli"'),
        ({"name": "tests.noop", "tags": ["t" * 900_000]}, "a tag must be at most 255 characters"),
        ({"type": "http", "http": {"url": "http://x", "timeout": -1}}, "http.timeout must be between"),
        # before: 201, then the worker failed them on every try
        ({"type": "http", "http": {"url": "http://"}}, "http.url must be an absolute"),
        ({"type": "http", "http": {"url": "http://a b/"}}, "http.url must be an ASCII string"),
        ({"type": "http", "http": {"url": "http://[::1/"}}, "is not a valid URL"),
        ({"type": "http", "http": {"url": "http://x", "headers": {"X-A": "1\r\nX-B: 2"}}}, "http.headers"),
        ({"type": "http", "http": {"url": "http://x", "headers": {"bad name": "1"}}}, "not a valid header name"),
        ({"type": "cli", "cli": {"argv": ["echo", "a\u0000b"]}}, "NUL"),
        ({"type": "cli", "cli": {"argv": ["env"], "env": {"A=B": "1"}}}, "not a valid variable name"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(hz, client, body, words):  # noqa: F811
    from dataclasses import replace

    from horizon.config import JobTypeSettings

    services = client.application.extensions["horizon"]  # cli enabled: its spec is what is judged
    job_types = replace(services.settings.job_types, cli=JobTypeSettings(enabled=True))
    services.settings = replace(services.settings, job_types=job_types)
    message = assert_error(client.post(f"{API}/jobs", data=json.dumps(body)), 400, "BAD_REQUEST")
    assert words in message
    assert hz.redis.keys(f"{{{hz.settings.prefix}}}:job:*") == []


def test_a_deeply_nested_or_oversized_body_is_a_json_400(hz, client):  # noqa: F811
    """Before, a body nested about 1000 deep (2 KB) was a 500 (RecursionError in json.loads), and
    one over the size limit a 400 saying only "The data value transmitted exceeds the capacity limit"."""
    nested = '{"name": "tests.noop", "args": [' + "[" * 5000 + "]" * 5000 + "]}"
    message = assert_error(client.post(f"{API}/jobs", data=nested, content_type="application/json"), 400, "BAD_REQUEST")
    assert "nested too deep" in message
    big = json.dumps({"name": "tests.noop", "args": ["x" * (2 * 1024 * 1024)]})
    message = assert_error(client.post(f"{API}/jobs", data=big, content_type="application/json"), 400, "BAD_REQUEST")
    assert "larger than the limit of 1024 KiB" in message


@pytest.mark.parametrize("data", ['{"name": "tests.noop",', "[1, 2]", "NaN", b"\xff\xfe"])
def test_malformed_or_non_object_json_is_400(hz, client, data):  # noqa: F811
    assert_error(client.post(f"{API}/jobs", data=data, content_type="application/json"), 400, "BAD_REQUEST")


@pytest.mark.parametrize("field", ['"args": ["\\ud800"]', '"tags": ["\\udfff"]', '"queue": "q\\ud800"'])
def test_a_lone_surrogate_in_a_body_is_400_not_500(hz, client, field):  # noqa: F811
    """JSON can spell a lone surrogate (an escape such as \\ud800), which no UTF-8 text holds. Before,
    Redis's client failed to encode it: a 500. Now the body is refused, naming it."""
    data = '{"name": "tests.noop", ' + field + "}"
    message = assert_error(client.post(f"{API}/jobs", data=data, content_type="application/json"), 400, "BAD_REQUEST")
    assert "is a lone surrogate, not a Unicode character" in message
    assert hz.redis.keys(f"{{{hz.settings.prefix}}}:job:*") == []


def test_unknown_job_name_is_422_naming_it(hz, client):  # noqa: F811
    message = assert_error(client.post(f"{API}/jobs", json={"name": "nope.job"}), 422, "UNPROCESSABLE")
    assert "nope.job" in message


def test_http_and_cli_types(hz, client, monkeypatch):  # noqa: F811
    spec = {"method": "post", "url": "https://example.com/hook", "json": {"a": 1}}
    job = create(client, {"type": "http", "http": spec, "tries": 2}).get_json()
    assert job["name"] == "horizon.http"
    assert job["payload"]["kwargs"] == {**spec, "method": "POST"}
    assert hz.redis.hget(hz.keys.job(job["id"]), "type") == "http"
    assert "job_types.cli" in assert_error(
        client.post(f"{API}/jobs", json={"type": "cli", "cli": {"argv": ["true"]}}), 403, "FORBIDDEN"
    )
    from dataclasses import replace

    from horizon.config import JobTypeSettings

    services = client.application.extensions["horizon"]
    settings = services.settings
    services.settings = replace(settings, job_types=replace(settings.job_types, cli=JobTypeSettings(enabled=True)))
    job = create(client, {"type": "cli", "cli": {"argv": ["echo", "hi"]}}).get_json()
    assert job["name"] == "horizon.cli" and job["payload"]["kwargs"] == {"argv": ["echo", "hi"]}


def test_idempotency_key_body_or_header(hz, client):  # noqa: F811
    body = {"name": "tests.add", "args": ["k", 1, 1], "idempotency_key": "order-7"}
    first = create(client, body).get_json()
    replay = create(client, body, status=200)
    assert replay.get_json()["id"] == first["id"] and replay.headers["Location"].endswith(first["id"])
    other = {**body, "args": ["k", 2, 2]}
    assert first["id"] in assert_error(client.post(f"{API}/jobs", json=other), 409, "CONFLICT")
    plain = {"name": "tests.noop"}
    one = create(client, plain, headers={"Idempotency-Key": "h-1"}).get_json()
    assert create(client, plain, status=200, headers={"Idempotency-Key": "h-1"}).get_json()["id"] == one["id"]
    assert hz.redis.llen(hz.keys.queue("default")) == 2
    mismatch = client.post(f"{API}/jobs", json={**plain, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"})
    assert_error(mismatch, 400, "BAD_REQUEST")


def test_replaying_a_key_whose_job_is_gone_is_a_conflict_naming_it(hz, client):  # noqa: F811
    """The key lives idempotency_ttl (a day), a finished job's record trim.completed (an hour): a
    replay then answered 404 "job ... does not exist" to a POST, as if nothing had been created."""
    body = {"name": "tests.noop", "idempotency_key": "gone-1"}
    first = create(client, body).get_json()
    hz.redis.delete(hz.keys.job(first["id"]))  # as when its record was trimmed
    message = assert_error(client.post(f"{API}/jobs", json=body), 409, "CONFLICT")
    assert first["id"] in message and "record is gone" in message
    assert hz.redis.llen(hz.keys.queue("default")) == 1  # not created again


def test_one_idempotency_key_names_one_job_from_python_and_the_api(hz, client):  # noqa: F811
    """Python hashed [name, queue, payload] and the API the raw body: the same job sent both ways
    conflicted (409 / IdempotencyConflict), and so did a body adding an explicit "kwargs": {}."""
    from horizon.repositories.queues import IdempotencyConflict

    first = sample_jobs.add.options(idempotency_key="both-1").dispatch("k", 1, 2)
    body = {"name": "tests.add", "args": ["k", 1, 2], "idempotency_key": "both-1"}
    assert create(client, body, status=200).get_json()["id"] == first
    assert create(client, {**body, "kwargs": {}}, status=200).get_json()["id"] == first
    api_first = create(client, {"name": "tests.add", "args": ["k", 3, 4], "idempotency_key": "both-2"}).get_json()
    assert sample_jobs.add.options(idempotency_key="both-2").dispatch("k", 3, 4) == api_first["id"]
    # another job under a key stays a conflict, from either side
    assert first in assert_error(client.post(f"{API}/jobs", json={**body, "tries": 3}), 409, "CONFLICT")
    with pytest.raises(IdempotencyConflict, match=api_first["id"]):
        sample_jobs.add.options(idempotency_key="both-2", tries=3).dispatch("k", 3, 4)
    assert hz.redis.llen(hz.keys.queue("default")) == 2


def test_after_parent_rules(hz, client):  # noqa: F811
    parent = sample_jobs.noop.dispatch()
    child = create(client, {"name": "tests.noop", "after": parent}).get_json()
    assert child["status"] == "scheduled"
    assert hz.redis.smembers(hz.keys.children(parent)) == {child["id"]}
    assert "nope" in assert_error(client.post(f"{API}/jobs", json={"name": "tests.noop", "after": "nope"}),
                                  422, "UNPROCESSABLE")  # fmt: skip
    hz.redis.hset(hz.keys.job(parent), "status", "completed")
    assert create(client, {"name": "tests.noop", "after": parent}).get_json()["status"] == "pending"
    for dead in ("failed", "cancelled"):
        hz.redis.hset(hz.keys.job(parent), "status", dead)
        assert dead in assert_error(client.post(f"{API}/jobs", json={"name": "tests.noop", "after": parent}),
                                    409, "CONFLICT")  # fmt: skip


def test_cancel_cascades_and_delete(hz, client):  # noqa: F811
    parent = sample_jobs.noop.dispatch()
    child = create(client, {"name": "tests.noop", "after": parent}).get_json()
    cancelled = post(client, f"/jobs/{parent}/cancel")
    assert cancelled["id"] == parent and cancelled["status"] == "cancelled"
    assert get(client, f"/jobs/{child['id']}")["status"] == "cancelled"
    assert hz.redis.llen(hz.keys.queue("default")) == 0
    assert "cancelled" in assert_error(client.post(f"{API}/jobs/{parent}/cancel"), 409, "CONFLICT")
    assert_error(client.post(f"{API}/jobs/nope/cancel"), 404, "NOT_FOUND")

    doomed = sample_jobs.noop.dispatch()
    assert client.delete(f"{API}/jobs/{doomed}").status_code == 204
    assert_error(client.get(f"{API}/jobs/{doomed}"), 404, "NOT_FOUND")
    assert get(client, "/jobs/pending")["total"] == 0
    assert hz.redis.llen(hz.keys.queue("default")) == 0
    assert_error(client.delete(f"{API}/jobs/{doomed}"), 404, "NOT_FOUND")

    running = sample_jobs.noop.dispatch()
    hz.redis.hset(hz.keys.job(running), "status", "reserved")  # as if a worker held it
    orphan = create(client, {"name": "tests.noop", "after": running}).get_json()
    assert client.delete(f"{API}/jobs/{running}").status_code == 204
    assert get(client, f"/jobs/{orphan['id']}")["status"] == "cancelled"


def test_xss_payloads_come_back_as_data(hz, client):  # noqa: F811
    evil = "<script>alert(1)</script>"
    response = create(client, {"name": "tests.record", "args": [evil], "tags": [evil]})
    assert response.mimetype == "application/json"
    job = get(client, f"/jobs/{response.get_json()['id']}")
    assert job["payload"]["args"] == [evil] and evil in job["tags"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(response.get_data(as_text=True))["payload"]["args"] == [evil]  # a JSON string, not markup
