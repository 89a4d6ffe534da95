"""Queue control and Server-Sent Events over the API, with real worker processes."""

from __future__ import annotations

import json
import threading

from tests import sample_jobs
from tests.api_fixtures import API, app, assert_error, client, get, post  # noqa: F401  (fixtures)
from tests.helpers import wait_for

QUEUE_FIELDS = {"name", "paused", "pending", "scheduled", "reserved", "completed", "failed", "processes", "wait"}


def test_queue_list_and_detail(hz, client):  # noqa: F811
    sample_jobs.noop.dispatch_many([((), {})] * 3)
    sample_jobs.noop.options(queue="emails", delay=60).dispatch()
    queues = get(client, "/queues")
    assert [q["name"] for q in queues] == ["default", "emails"]
    assert all(set(q) == QUEUE_FIELDS for q in queues)
    default = get(client, "/queues/default")
    assert (default["pending"], default["scheduled"], default["paused"]) == (3, 0, False)
    assert get(client, "/queues/emails")["scheduled"] == 1
    assert_error(client.get(f"{API}/queues/nope"), 404, "NOT_FOUND")
    assert_error(client.post(f"{API}/queues/nope/drain"), 404, "NOT_FOUND")


def test_a_queue_name_no_worker_could_serve_is_a_400(hz, client):  # noqa: F811
    """The same rule as dispatch (horizon.keys.check_queue_name) for the routes that take a name a
    queue may not have yet: pausing ahead of its jobs, and creating a job on it."""
    message = assert_error(client.post(f"{API}/queues/a:delayed/pause"), 400, "BAD_REQUEST")
    assert message.startswith("invalid queue name 'a:delayed': a queue name is 1 to 100 characters")
    response = client.post(f"{API}/jobs", json={"name": "tests.noop", "queue": "a b"})
    assert assert_error(response, 400, "BAD_REQUEST").startswith("invalid queue name 'a b'")
    assert hz.redis.smembers(hz.keys.paused()) == set() and hz.redis.smembers(hz.keys.queues()) == set()


def test_pause_is_honoured_by_workers_then_resume(hz, client, procs, redis_client):  # noqa: F811
    key = f"{hz.settings.prefix}-paused"
    ids = [sample_jobs.record.dispatch(key, i) for i in range(2)]
    assert post(client, "/queues/default/pause")["paused"] is True
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert redis_client.llen(key) == 0
    assert get(client, "/queues/default")["pending"] == 2
    resumed = post(client, "/queues/default/resume")
    assert resumed["paused"] is False
    assert hz.redis.llen(hz.keys.wake("default")) == 2  # wake-up tokens re-created
    assert procs.run("work", "--stop-when-empty").returncode == 0
    assert redis_client.llen(key) == 2
    assert all(get(client, f"/jobs/{i}")["status"] == "completed" for i in ids)
    assert get(client, "/queues/default")["completed"] == 2
    cleaned = client.post(f"{API}/queues/default/clean", json={"state": "completed"})
    assert cleaned.headers["X-Horizon-Affected"] == "2" and cleaned.get_json()["completed"] == 0
    assert get(client, "/jobs/completed")["total"] == 0
    redis_client.delete(key)


def test_a_drain_of_many_chunks_reports_its_whole_count(hz, client, redis_client):  # noqa: F811
    """The drain runs in chunks of 1000; its queue:drained event gave the last chunk's count
    (500 for 2500 jobs) where X-Horizon-Affected gave the whole."""
    sample_jobs.noop.options(queue="big").dispatch_many([((), {})] * 2200)
    sample_jobs.noop.options(queue="big", delay=600).dispatch_many([((), {})] * 300)
    drained = client.post(f"{API}/queues/big/drain")
    assert drained.headers["X-Horizon-Affected"] == "2500"
    events = [json.loads(e["data"]) for _, e in redis_client.xrange(hz.keys.events()) if e["event"] == "queue:drained"]
    assert [(e["queue"], e["removed"]) for e in events] == [("big", 2500)]


def test_a_queue_name_that_is_not_utf8_is_a_400(hz, client):  # noqa: F811
    """Werkzeug decodes a path's invalid UTF-8 into U+FFFD: POST queues/%FF/pause paused a queue
    named '\ufffd' (and listed it for ever). Now such a path is refused."""
    for raw in ("%FF", "%ED%A0%80", "%C3%28"):
        message = assert_error(client.post(f"{API}/queues/{raw}/pause"), 400, "BAD_REQUEST")
        assert "not valid UTF-8" in message
    assert get(client, "/queues") == []
    assert_error(client.get(f"{API}/jobs/%FF"), 400, "BAD_REQUEST")


def test_events_of_a_queue_name_no_queue_can_have_is_a_400(hz, client):  # noqa: F811
    """Before, GET queues/a:b/events answered 200 (an endless stream of nothing)."""
    for path in ("/queues/a:b/events", "/events?queue=a%20b"):
        assert "invalid queue name" in assert_error(client.get(API + path), 400, "BAD_REQUEST")


def test_drain_promote_clean_and_retry_all(hz, client, procs, redis_client):  # noqa: F811
    sample_jobs.noop.dispatch_many([((), {})] * 5)
    later = sample_jobs.noop.options(delay=3600).dispatch()
    drained = client.post(f"{API}/queues/default/drain")
    assert drained.status_code == 200 and drained.headers["X-Horizon-Affected"] == "6"
    assert (drained.get_json()["pending"], drained.get_json()["scheduled"]) == (0, 0)
    assert_error(client.get(f"{API}/jobs/{later}"), 404, "NOT_FOUND")

    soon = sample_jobs.noop.options(delay=3600).dispatch()
    promoted = post(client, "/queues/default/promote")
    assert (promoted["pending"], promoted["scheduled"]) == (1, 0)
    assert get(client, f"/jobs/{soon}")["status"] == "pending"

    key = f"{hz.settings.prefix}-failing"
    failed = [sample_jobs.fail.dispatch(key) for _ in range(2)]
    assert procs.run("work", "--stop-when-empty").returncode == 0
    assert get(client, "/queues/default")["failed"] == 2
    retried = client.post(f"{API}/queues/default/retry")
    assert retried.headers["X-Horizon-Affected"] == "2" and retried.get_json()["pending"] == 2
    assert client.post(f"{API}/queues/default/retry").headers["X-Horizon-Affected"] == "0"  # no double retry
    assert all(len(get(client, f"/jobs/{i}")["retried_by"]) == 1 for i in failed)

    assert_error(client.post(f"{API}/queues/default/clean", json={"state": "weird"}), 400, "BAD_REQUEST")
    assert_error(client.post(f"{API}/queues/default/clean", json={"state": "failed", "grace": -1}), 400, "BAD_REQUEST")
    too_long = client.post(f"{API}/queues/default/clean", json={"state": "failed", "grace": 315360001})
    assert "between 0 and 315360000, got 315360001" in assert_error(too_long, 400, "BAD_REQUEST")  # was 3.1536e+08
    kept = client.post(f"{API}/queues/default/clean", json={"state": "failed", "grace": 3600})
    assert kept.headers["X-Horizon-Affected"] == "0"
    cleaned = client.post(f"{API}/queues/default/clean", json={"state": "failed", "grace": 0})
    assert cleaned.headers["X-Horizon-Affected"] == "2" and cleaned.get_json()["failed"] == 0
    assert get(client, "/jobs/failed")["total"] == 0
    redis_client.delete(key)


def read_events(client, path: str, headers=None) -> list[dict]:  # noqa: F811
    """Read an event stream until the server closes it (lifetime 0.5 s in these tests)."""
    response = client.get(API + path, headers=headers or {}, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    text = b"".join(response.response).decode()
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            events.append({"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])})
    assert ": heartbeat" in text or events
    return events


def test_sse_resume_with_last_event_id_and_queue_filter(hz, client):  # noqa: F811
    a = sample_jobs.noop.dispatch()
    b = sample_jobs.noop.options(queue="other").dispatch()
    post(client, "/queues/default/pause")
    events = read_events(client, "/events", {"Last-Event-ID": "0-0"})
    assert [(e["event"], e["data"].get("job_id")) for e in events] == [
        ("job:pending", a), ("job:pending", b), ("queue:paused", None)
    ]  # fmt: skip
    assert events[0]["data"]["queue"] == "default" and isinstance(events[0]["data"]["time"], float)
    resumed = read_events(client, "/events", {"Last-Event-ID": events[0]["id"]})
    assert [e["id"] for e in resumed] == [e["id"] for e in events[1:]]
    only_other = read_events(client, "/queues/other/events?last_event_id=0-0")
    assert [e["data"]["job_id"] for e in only_other] == [b]
    assert_error(client.get(f"{API}/events", headers={"Last-Event-ID": "junk"}), 400, "BAD_REQUEST")


def test_sse_last_event_id_beyond_64_bits_is_a_bad_request(hz, client):  # noqa: F811
    """Each part of a stream id is an unsigned 64-bit number: a larger one is refused up front (it
    once reached XREAD, whose error ended the stream after its headers were sent)."""
    top = str(2**64 - 1)
    for given in (f"{2**64}-0", f"0-{2**64}", str(2**64), "99999999999999999999-0"):
        response = client.get(f"{API}/events?last_event_id={given}")
        assert_error(response, 400, "BAD_REQUEST")
        assert given in response.get_json()["error"]["message"]
    sample_jobs.noop.dispatch()
    assert read_events(client, "/events", {"Last-Event-ID": f"{top}-{top}"}) == []  # valid: nothing after it
    assert [e["event"] for e in read_events(client, "/events", {"Last-Event-ID": "0"})] == ["job:pending"]


def test_an_event_stream_gives_back_its_slot_however_it_ends(hz, app):  # noqa: F811
    """With one slot: a second stream is refused (503, Retry-After) while the first is open; the
    slot is free again after a stream ran to its lifetime, and after one closed before its first
    byte was read."""
    app.config["HORIZON_MAX_STREAMS"] = 1
    web = app.test_client()
    first = web.get(API + "/events", buffered=False)
    assert first.status_code == 200
    refused = web.get(API + "/events")
    assert assert_error(refused, 503, "UNAVAILABLE").startswith("this server process already serves 1 event streams")
    assert refused.headers["Retry-After"] == "5"
    first.close()  # closed unread
    assert read_events(web, "/events") == []  # admitted; runs to its lifetime (0.5 s) and ends
    assert read_events(web, "/events") == []  # and again


def test_sse_delivers_live_events(hz, app):  # noqa: F811
    app.config["HORIZON_SSE_LIFETIME"] = 3.0
    got: list[list[dict]] = []
    reader = threading.Thread(target=lambda: got.append(read_events(app.test_client(), "/events")))
    reader.start()
    # the stream starts at the newest entry: keep dispatching until the reader has seen one
    wait_for(lambda: (sample_jobs.noop.dispatch(), not reader.is_alive())[1], timeout=10, interval=0.2)
    reader.join()
    assert got[0] and all(e["event"] == "job:pending" for e in got[0])


def test_sse_stream_ends_cleanly_when_redis_goes_away(tmp_path, prefix, caplog):
    """Redis stops mid-stream: the stream ends (the client reconnects with Last-Event-ID), no
    exception escapes into the server; the reconnection is the JSON 503 while Redis is down."""
    from horizon.config import settings_from_dict
    from horizon.context import configure, reset
    from horizon.embedded import EmbeddedRedis
    from web import create_app

    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    own = configure(settings_from_dict({"prefix": prefix, "redis": {"url": server.url}}))
    try:
        app = create_app(own.settings, own)
        app.config.update(HORIZON_SSE_HEARTBEAT=0.1, HORIZON_SSE_LIFETIME=30)
        response = app.test_client().get(API + "/events", buffered=False)
        chunks = iter(response.response)
        assert b": connected" in next(chunks)
        assert b": heartbeat" in next(chunks)
        server.stop()
        with caplog.at_level("WARNING"):
            rest = b"".join(chunks)  # before: raised redis.ConnectionError
        assert b"event:" not in rest and "event stream ended: redis unavailable" in caplog.text
        again = app.test_client().get(API + "/events")
        assert again.status_code == 503 and again.get_json()["error"]["code"] == "UNAVAILABLE"
    finally:
        own.close()
        reset()
        server.stop()
