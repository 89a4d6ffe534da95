"""Recurring jq jobs (``schedule.cron``) in-process against the real Redis: how their runs are tried.

A recurring job keeps ``timeout``, ``max_retry_count`` and ``retry_delay`` (its queue's
``job_defaults`` filling missing ones, as for one-time jobs) on its stored schedule; each run it
dispatches (fired here with :func:`horizon.schedules.fire_due`) carries them as timeout, tries and
backoff; ``get_job`` reports them and ``update_job`` changes them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from horizon.schedules import ScheduleRepository, fire_due, parse
from web.rpc.endpoint import DISPATCHER
from web.rpc.session import Connection

NOW = 1_800_000_000.2
EACH_SECOND = {"cron": "* * * * * *"}


class Rpc:
    """JSON-RPC calls through the dispatcher, on one logged-in connection."""

    def __init__(self, hz: Any) -> None:
        self.conn, self.next_id = Connection(hz), 0
        self.call("session.create", {})

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        return DISPATCHER.call({"id": self.next_id, "method": method, "params": params}, self.conn)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        reply = self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    def error(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = self.request(method, params)
        assert "result" not in reply, reply
        return reply["error"]


@pytest.fixture
def rpc(hz) -> Rpc:
    return Rpc(hz)


def _run(hz, job_id: str, at: float = NOW) -> dict[str, Any]:
    """Fire the recurring job ``schedule:<name>`` once, at ``at`` (later than any earlier call's): its
    run's tries, timeout, backoff and kwargs."""
    name = job_id.removeprefix("schedule:")
    ScheduleRepository(hz).advance(name, at - 1)
    (fired,) = [f for f in fire_due(hz, at, owner="test") if f.schedule == name]
    record = hz.redis.hgetall(hz.keys.job(fired.job_id))
    return {"tries": int(record["tries"]), "timeout": float(record["timeout"]),
            "backoff": json.loads(record["backoff"]), "kwargs": json.loads(record["payload"])["kwargs"]}


def _options(run: dict[str, Any]) -> tuple[int, float, list[float]]:
    return run["tries"], run["timeout"], run["backoff"]


def test_queue_job_defaults_and_explicit_members_reach_a_recurring_jobs_runs(hz, rpc) -> None:
    rpc.call("jq.add_queue", {"name": "nightly", "job_defaults": {"timeout": 45, "max_retry_count": 2,
                                                                  "retry_delay": 4}})
    job = {"queue": "nightly", "type": "job", "job": "tests.noop", "schedule": EACH_SECOND}
    defaults = rpc.call("jq.add_job", {**job, "name": "defaults"})
    explicit = rpc.call("jq.add_job", {**job, "name": "explicit", "timeout": 300, "retry_delay": 7})
    assert _options(_run(hz, defaults)) == (3, 45.0, [4.0])
    assert _options(_run(hz, explicit, NOW + 10)) == (3, 300.0, [7.0])  # explicit members win over the defaults
    got = rpc.call("jq.get_job", {"id": explicit})
    assert (got["timeout"], got["max_retry_count"], got["retry_delay"]) == (300, 2, 7)
    assert got["recurring"] is True and got["schedule"] == EACH_SECOND
    # without them (a queue without job_defaults), a run takes the job's options as before
    bare = rpc.call("jq.add_job", {"type": "job", "job": "tests.noop", "name": "bare", "schedule": EACH_SECOND})
    assert not {"timeout", "max_retry_count", "retry_delay"} & set(rpc.call("jq.get_job", {"id": bare}))
    assert _options(_run(hz, bare, NOW + 20)) == (1, 30.0, [0.0])  # the default queue's supervisor (tests' config)


def test_update_job_changes_how_a_recurring_jobs_runs_are_tried(hz, rpc) -> None:
    job = rpc.call("jq.add_job", {"type": "job", "job": "tests.noop", "name": "tuned", "timeout": 30,
                                  "schedule": {"cron": "0 0 3 * * *"}})
    assert rpc.call("jq.update_job", {"id": job, "timeout": 120, "max_retry_count": 5}) == job
    got = rpc.call("jq.get_job", {"id": job})
    assert (got["timeout"], got["max_retry_count"], got["schedule"]) == (120, 5, {"cron": "0 0 3 * * *"})
    assert rpc.call("jq.update_job", {"id": job, "retry_delay": 9, "schedule": EACH_SECOND}) == job
    got = rpc.call("jq.get_job", {"id": job})
    assert (got["timeout"], got["max_retry_count"], got["retry_delay"]) == (120, 5, 9)
    assert _options(_run(hz, job)) == (6, 120.0, [9.0])

    http = rpc.call("jq.add_job", {"type": "http", "url": "https://example.com/hook", "name": "hook",
                                   "schedule": EACH_SECOND})
    assert rpc.call("jq.update_job", {"id": http, "timeout": 15}) == http
    run = _run(hz, http, NOW + 10)
    assert run["timeout"] == 15.0 and run["kwargs"]["timeout"] == 15  # the request's, as for one-time jobs

    ScheduleRepository(hz).save(parse({"name": "api", "job": "tests.noop", "every": 5}))
    assert rpc.call("jq.update_job", {"id": "schedule:api", "max_retry_count": 1}) == "schedule:api"
    got = rpc.call("jq.get_job", {"id": "schedule:api"})
    assert got["schedule"] == {"every": 5.0} and got["max_retry_count"] == 1


@pytest.mark.parametrize(
    ("queue_defaults", "members", "message"),
    [
        ({}, {"timeout": 86401}, "timeout: timeout must be from 0.001 to 86400 seconds, got 86401"),
        ({}, {"retry_delay": 604801}, "retry_delay: backoff must be from 0 to 604800 seconds, got 604801"),
        ({"timeout": 100000}, {}, "the queue's job_defaults.timeout: timeout must be from 0.001 to 86400 seconds"),
        ({}, {"priority": "high"}, "priority: a recurring job (schedule.cron) cannot keep this: its schedule has "
                                   "no priority"),
        ({}, {"predecessor": "x", "timeout": 5}, "predecessor: a recurring job (schedule.cron) cannot keep this: "
                                                 "its schedule has no priority and its runs wait for no predecessor"),
    ],
    ids=["timeout-over-a-day", "retry-delay-over-a-week", "queue-default-timeout", "priority", "predecessor"],
)
def test_a_recurring_job_refuses_what_its_runs_cannot_take(hz, rpc, queue_defaults, members, message) -> None:
    rpc.call("jq.add_queue", {"name": "strict", "job_defaults": queue_defaults})
    error = rpc.error("jq.add_job", {"queue": "strict", "type": "job", "job": "tests.noop", "schedule": EACH_SECOND,
                                     **members})
    assert error["code"] == -32602 and error["message"].startswith(message), error
    assert hz.redis.hlen(hz.keys.schedules()) == 0


def test_a_refused_update_leaves_the_recurring_job_as_it_was(hz, rpc) -> None:
    job = rpc.call("jq.add_job", {"type": "job", "job": "tests.noop", "name": "kept", "timeout": 30,
                                  "schedule": {"cron": "0 0 3 * * *"}})
    for members, message in (
        ({"schedule": {"cron": "99 * * * * *"}}, "schedule: cron"),  # was deleted before the new cron was refused
        ({"timeout": 0}, "timeout has an invalid value 0"),
        ({"retry_delay": 604801}, "retry_delay: backoff must be from 0 to 604800 seconds"),
        ({"url": "https://example.com/", "timeout": 60}, "url: only the schedule, timeout, max_retry_count and"),
    ):
        error = rpc.error("jq.update_job", {"id": job, **members})
        assert error["code"] == -32602 and error["message"].startswith(message), (members, error)
    got = rpc.call("jq.get_job", {"id": job})
    assert (got["schedule"], got["timeout"]) == ({"cron": "0 0 3 * * *"}, 30)
