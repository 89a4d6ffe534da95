"""Pure parts of the JSON-RPC websocket: framing, param binding, jq schedules, status mapping."""

from __future__ import annotations

import json

import pytest

from horizon.worker import JobTimeout, _class_name
from web.rpc import jq_model
from web.rpc.jq_schedule import Schedule, parse_schedule
from web.rpc.protocol import Dispatcher, RpcError

NOW = 1_700_000_000.0


def echo(ctx, *, a, b=2):
    return {"a": a, "b": b}


def open_ended(ctx, **params):
    return params


def boom(ctx):
    raise RuntimeError("secret detail")


def refuse(ctx):
    raise RpcError(-32000, "invalid session")


@pytest.fixture
def dispatcher() -> Dispatcher:
    d = Dispatcher()
    for name, fn in {"t.echo": echo, "t.open": open_ended, "t.boom": boom, "t.refuse": refuse}.items():
        d.add(name, fn)
    return d


def reply(d: Dispatcher, frame: str | bytes):
    return json.loads(d.handle_frame(frame, None))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"id": 1, "method": "t.echo", "params": [5]}', {"id": 1, "result": {"a": 5, "b": 2}}),
        ('{"id": "x", "method": "t.echo", "params": {"a": 1, "b": 3}}', {"id": "x", "result": {"a": 1, "b": 3}}),
        ('{"id": 2, "method": "t.open", "params": {"z": 1}}', {"id": 2, "result": {"z": 1}}),
        ('{"id": 3, "method": "t.refuse"}', {"id": 3, "error": {"code": -32000, "message": "invalid session"}}),
        ('{"id": 4, "method": "t.boom"}', {"id": 4, "error": {"code": -32603, "message": "internal error"}}),
        ('{"id": 5, "method": "t.none"}',
         {"id": 5, "error": {"code": -32601, "message": "method not found", "data": {"method": "t.none"}}}),
    ],
)
def test_requests(dispatcher: Dispatcher, frame: str, expected: dict) -> None:
    assert reply(dispatcher, frame) == expected


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", -32700),
        (b"\xff", -32700),
        ('{"id": 1, "method": "t.echo", "params": ["\\ud800"]}', -32700),  # a lone surrogate is not text
        ("", -32700),
        ("[]", -32600),
        ("3", -32600),
        ('{"method": "t.echo"}', -32600),
        ('{"id": true, "method": "t.echo"}', -32600),
        ('{"id": 1, "method": ""}', -32600),
        ('{"id": 1, "method": "t.echo", "extra": 1}', -32600),
        ('{"id": 1, "method": "t.echo"}', -32602),
        ('{"id": 1, "method": "t.echo", "params": [1, 2, 3]}', -32602),
        ('{"id": 1, "method": "t.echo", "params": {"a": 1, "c": 1}}', -32602),
        ('{"id": 1, "method": "t.echo", "params": "a"}', -32602),
        ('{"id": 1, "method": "t.open", "params": [1]}', -32602),
    ],
)
def test_errors(dispatcher: Dispatcher, frame: str, code: int) -> None:
    assert reply(dispatcher, frame)["error"]["code"] == code


DEEP = '{"id": 1, "method": "t.open", "params": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}"


@pytest.mark.parametrize(
    "frame",
    [
        '{"id": NaN, "method": "t.echo", "params": [1]}',
        '{"id": Infinity, "method": "t.echo", "params": [1]}',
        '{"id": -Infinity, "method": "t.echo", "params": [1]}',
        '{"id": 1e400, "method": "t.echo", "params": [1]}',
        '{"id": 1, "method": "t.echo", "params": [NaN]}',
        '{"id": 1, "method": "t.echo", "params": {"a": {"b": [-1e999]}}}',
        '[{"id": 1, "method": "t.echo", "params": [1]}, {"id": 2, "method": "t.echo", "params": [Infinity]}]',
        DEEP,
        "[" * 100_000,
    ],
)
def test_non_finite_numbers_and_deep_nesting_are_parse_errors(dispatcher: Dispatcher, frame: str) -> None:
    """JSON has no NaN/Infinity and a double cannot hold 1e400: the frame is a parse error (and the
    reply is valid JSON), as is nesting deeper than the parser's limit (not a RecursionError)."""
    out = reply(dispatcher, frame)
    assert out["id"] is None and out["error"]["code"] == -32700, out


def test_a_reply_that_cannot_be_encoded_is_an_internal_error(dispatcher: Dispatcher) -> None:
    dispatcher.add("t.nan", lambda ctx: float("nan"))
    dispatcher.add("t.deep", lambda ctx: __import__("functools").reduce(lambda acc, _: [acc], range(5000), []))
    assert reply(dispatcher, '{"id": 7, "method": "t.nan"}') == {
        "id": 7, "error": {"code": -32603, "message": "internal error"}}
    batch = reply(dispatcher, '[{"id": 8, "method": "t.deep"}, {"id": 9, "method": "t.echo", "params": [1]}]')
    assert batch == [{"id": 8, "error": {"code": -32603, "message": "internal error"}},
                     {"id": 9, "result": {"a": 1, "b": 2}}]
    assert reply(dispatcher, '{"id": 1.5, "method": "t.echo", "params": [1]}')["id"] == 1.5


def test_batch_answers_each_in_place(dispatcher: Dispatcher) -> None:
    out = reply(dispatcher, '[{"id": 1, "method": "t.echo", "params": [1]}, 7, {"id": 2, "method": "t.x"}]')
    assert [r.get("id") for r in out] == [1, None, 2]
    assert [r.get("error", {}).get("code") for r in out] == [None, -32600, -32601]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, Schedule()),
        ({"unix_time": 1_700_000_100}, Schedule(run_at=1_700_000_100.0)),
        ({"date_time": "+02:00"}, Schedule(run_at=NOW + 120)),
        ({"date_time": "+05"}, Schedule(run_at=NOW + 5)),
        ({"date_time": "+01:00:00"}, Schedule(run_at=NOW + 3600)),
        ({"date_time": "2023-04-30T13:20:00Z"}, Schedule(run_at=1682860800.0)),
        ({"date_time": "2023-04-30T16:20:00+03:00"}, Schedule(run_at=1682860800.0)),
        ({"cron": "0  */3 * * * *"}, Schedule(cron="0 */3 * * * *")),
    ],
)
def test_schedules(schedule, expected) -> None:
    assert parse_schedule(schedule, NOW) == expected


@pytest.mark.parametrize(
    "schedule",
    [{"unix_time": "soon"}, {"unix_time": True}, {"date_time": "tomorrow"}, {"date_time": 5},
     {"cron": "* * * * *"}, {"every": 5}, {}, {"unix_time": 1, "cron": "* * * * * *"}, [1],
     {"unix_time": NOW + 20 * 366 * 86400}, {"unix_time": float("nan")}, {"unix_time": float("inf")},
     {"unix_time": -float("inf")}, {"unix_time": 10**400}, {"date_time": "+" + "9" * 400 + ":00:00"}],
)
def test_bad_schedules_name_the_problem(schedule) -> None:
    with pytest.raises(RpcError) as info:
        parse_schedule(schedule, NOW)
    assert info.value.code == -32602 and "schedule" in info.value.message


@pytest.mark.parametrize(
    ("h", "kwargs", "status"),
    [
        ({"status": "pending"}, {}, "scheduled"),
        ({"status": "pending"}, {"paused": True}, "suspended"),
        ({"status": "scheduled"}, {}, "scheduled"),
        ({"status": "scheduled", "after": "p"}, {"parent_status": "reserved"}, "waiting-predecessor"),
        ({"status": "scheduled", "after": "p"}, {"parent_status": "completed"}, "scheduled"),
        ({"status": "reserved"}, {}, "running"),
        ({"status": "completed"}, {}, "completed"),
        ({"status": "failed", "exception": '{"class": "ValueError"}'}, {}, "failed-worker-error"),
        ({"status": "failed", "exception": '{"class": "JobTimeout"}'}, {}, "timeout"),
        ({"status": "failed", "exception": json.dumps({"class": _class_name(JobTimeout("t"))})}, {}, "timeout"),
        ({"status": "cancelled"}, {}, "deleted"),
        ({"status": "odd"}, {}, "unknown"),
    ],
)
def test_job_status_values(h, kwargs, status) -> None:
    assert jq_model.job_status(h, **kwargs) == status


@pytest.mark.parametrize(
    ("h", "schedule"),
    [
        ({"available_at": "1700003600.5", "jq": '{"schedule": {"date_time": "+01:00:00"}}'}, {"unix_time": 1700003600}),
        ({"jq": '{"schedule": {"unix_time": 1600000000.0}}'}, {"unix_time": 1600000000}),
        ({"jq": '{"schedule": {"date_time": "+01:00:00"}}'}, None),  # a record of an older version
        ({"jq": '{"schedule": {"unix_time": NaN}}'}, None),
        ({}, None),
    ],
)
def test_get_job_schedule_holds_only_unix_time(h, schedule) -> None:
    got = jq_model.job_detail({"id": "j", "status": "scheduled", **h}, {"id": 1, "name": "q"}, "scheduled")
    assert got.get("schedule") == schedule


def test_an_unavailable_service_is_its_own_error_without_a_traceback(caplog) -> None:
    """Redis away is not a bug in a method: -32002 "retry shortly", one warning, no traceback."""

    def needs_redis(ctx):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    d = Dispatcher(unavailable=(ConnectionError,))
    d.add("t.redis", needs_redis)
    d.add("t.boom", boom)
    with caplog.at_level("WARNING"):
        assert reply(d, '{"id": 1, "method": "t.redis"}') == {
            "id": 1, "error": {"code": -32002, "message": "redis is unavailable; retry shortly"}}
    assert "Traceback" not in caplog.text and "service unavailable" in caplog.text
    assert reply(d, '{"id": 2, "method": "t.boom"}')["error"]["code"] == -32603  # other failures unchanged


def test_the_websocket_dispatcher_treats_redis_outages_as_unavailable() -> None:
    import redis

    from web.rpc.endpoint import DISPATCHER

    assert redis.ConnectionError in DISPATCHER.unavailable
    assert redis.TimeoutError in DISPATCHER.unavailable
