"""Lua script assembly: each script carries only the prelude helpers it uses, and still loads."""

from __future__ import annotations

import json
import re

import pytest
import redis

from horizon import scripts
from horizon.queue import JobSpec
from tests.helpers import in_forked_child


def _prelude_names() -> set[str]:
    return {name for name, _ in scripts._prelude_chunks()}


@pytest.mark.parametrize("name", scripts.script_names())
def test_every_script_loads_and_defines_each_helper_it_uses(name: str, redis_client) -> None:
    source = scripts.source(name)
    assert redis_client.script_load(source)
    defined = set(re.findall(r"^local function (\w+)|^local (\w+)\s*=", source, re.M))
    defined_names = {a or b for a, b in defined} | {f"K.{k}" for k in re.findall(r"^K\.(\w+) = function", source, re.M)}
    used = scripts._references(source) & _prelude_names()
    assert used <= defined_names, f"{name} uses {sorted(used - defined_names)} without defining them"


def test_every_top_level_local_of_the_prelude_is_one_name_the_assembler_sees() -> None:
    """``local a, b = ...`` at the top level would hide ``b`` from the assembler: one name per line."""
    from importlib import resources

    text = (resources.files("horizon") / "lua" / "prelude.lua").read_text()
    for line in text.splitlines():
        if line.startswith("local "):
            assert scripts._DEFINITION.match(line), f"prelude line defines more than one name: {line!r}"


def test_scripts_leave_out_helpers_they_do_not_use() -> None:
    push, finish = scripts.source("push"), scripts.source("finish")
    assert "local function push_jobs" in push
    assert "local function finish_one" not in push
    assert "K.tag_failed = function" not in push
    assert "local function finish_one" in finish
    assert "local function push_jobs" not in finish
    # a script that touches no setting does not build them
    assert "local C =" not in scripts.source("page") and "local C =" in push
    # a word in a string literal is not a use: queue events write the field 'event', not the job event helper
    long_wait = scripts.source("long_wait")
    assert "local function queue_event" in long_wait and "local function event(" not in long_wait
    assert scripts._references("x('event', \"stamp\") -- enqueue") == {"x"}


def test_settings_are_written_into_the_scripts_as_lua_that_reads_back_the_same(redis_client) -> None:
    """Names with quotes, backslashes, newlines and non-ASCII letters reach Lua unchanged."""
    odd = 'q"\\\n\u00e9\u6f22'
    data = {"silenced": {odd: True, "plain": True}, "rl": {odd: [10, 1.5]}, "margin": 0.25, "events_max": 0}
    script = "local C = " + scripts._lua_value(data) + "\nreturn cjson.encode(C)"
    assert json.loads(redis_client.eval(script, 0)) == data
    with pytest.raises(ValueError, match="finite"):
        scripts._lua_value({"margin": float("inf")})


def test_a_script_sees_its_configuration(hz, redis_client) -> None:
    """Two configurations on one Redis each run their own scripts: here, events on and off."""
    from dataclasses import replace

    from horizon.context import Horizon

    quiet = Horizon(replace(hz.settings, events_max=0), client=hz.redis)
    assert quiet.scripts._scripts["push"].sha != hz.scripts._scripts["push"].sha
    hz.queue.push([_spec()])
    quiet.queue.push([_spec()])
    assert redis_client.xlen(hz.keys.events()) == 1  # the quiet configuration wrote no event


def test_the_event_stream_stays_capped_and_keeps_the_newest(hz, redis_client) -> None:
    """A call trims the stream (MAXLEN ~) with its first event and every 64th: after bulk pushes,
    single pushes and a worker's batches it holds events_max, plus at most 63 entries and one
    stream node (100 entries) that MAXLEN ~ keeps whole."""
    from dataclasses import replace

    from horizon.context import Horizon

    capped = Horizon(replace(hz.settings, events_max=200), client=hz.redis)
    key, bound = capped.keys.events(), 200 + 63 + 100
    lengths = []
    for _ in range(3):
        ids = capped.queue.push([_spec() for _ in range(1000)])  # two calls of 500 jobs, 500 events each
        lengths.append(redis_client.xlen(key))
        last = redis_client.xrevrange(key, count=1)[0][1]
        assert json.loads(last["data"])["job_id"] == ids[-1]
    for _ in range(300):
        capped.queue.push([_spec()])
    lengths.append(redis_client.xlen(key))
    jobs, _ = capped.queue.reserve_many(["default"], 64, worker="w")
    while jobs:  # 64 finished and 64 reserved per call: 128 events
        _, jobs, _ = capped.queue.finish_many([(j, "completed", 1.0, "") for j in jobs], ["default"], 64, "w")
        lengths.append(redis_client.xlen(key))
    assert len(lengths) > 50
    assert all(200 <= n <= bound for n in lengths), lengths


def _spec() -> JobSpec:
    return JobSpec(name="tests.add", queue="default", payload='{"args":[],"kwargs":{}}')


def test_script_calls_survive_a_flushed_script_cache(hz, redis_client) -> None:
    hz.queue.push([_spec()])
    redis_client.script_flush()
    hz.queue.push([_spec()])
    redis_client.script_flush()
    jobs, _ = hz.queue.reserve_many(["default"], 1)
    assert len(jobs) == 1
    redis_client.script_flush()
    # the blocking wait sends BRPOP and the reserve script together; NOSCRIPT on the second reply
    jobs, _ = hz.queue.wait_and_reserve(["default"], 1.0)
    assert len(jobs) == 1
    assert redis_client.llen(hz.keys.queue("default")) == 0


def test_a_killed_script_connection_is_replaced(hz, redis_client) -> None:
    connection = hz.scripts.connection()
    hz.queue.push([_spec()])
    connection.send_command("CLIENT", "ID")
    redis_client.client_kill_filter(_id=connection.read_response())
    ids = hz.queue.push([_spec()])
    assert redis_client.hget(hz.keys.job(ids[0]), "status") == "pending"
    assert redis_client.llen(hz.keys.queue("default")) == 2


def test_a_forked_child_never_uses_the_parents_script_connection(hz, redis_client) -> None:
    hz.queue.push([_spec()])
    parent_connection = hz.scripts.connection()

    def child() -> bool:  # its own connection, its own reply
        spec = _spec()
        return hz.scripts.connection() is not parent_connection and hz.queue.push([spec]) == [spec.id]

    assert in_forked_child(child) == 0
    spec = _spec()
    assert hz.queue.push([spec]) == [spec.id]
    assert hz.scripts.connection() is parent_connection
    assert redis_client.llen(hz.keys.queue("default")) == 3


def test_a_bulk_push_after_a_flushed_script_cache_pushes_every_chunk_once(hz, redis_client) -> None:
    from horizon.queue import PUSH_CHUNK

    specs = [_spec() for _ in range(PUSH_CHUNK * 2 + 7)]
    redis_client.script_flush()
    assert hz.queue.push(specs) == [s.id for s in specs]
    queued = redis_client.lrange(hz.keys.queue("default"), 0, -1)
    assert sorted(queued) == sorted(s.id for s in specs)
    assert redis_client.zcard(hz.keys.index("pending")) == len(specs)


def test_a_bulk_push_on_a_connection_the_server_closed_reconnects_first(hz, redis_client) -> None:
    connection = hz.scripts.connection()
    hz.queue.push([_spec()])
    connection.send_command("CLIENT", "ID")
    redis_client.client_kill_filter(_id=connection.read_response())
    specs = [_spec() for _ in range(3)]
    assert hz.queue.push(specs) == [s.id for s in specs]
    assert redis_client.llen(hz.keys.queue("default")) == 4


def test_script_arguments_reach_redis_unchanged_when_packed_by_hiredis(hz, redis_client) -> None:
    assert scripts._hiredis_pack is not None  # a dependency: the fast packing path is the one tested
    spec = JobSpec(name="naïve.job", queue="default", payload='{"args":["✓ ünïcode",1.5],"kwargs":{}}',
                   tries=3, timeout=0.1 + 0.2, backoff=(1e20,))
    hz.queue.push([spec])
    stored = redis_client.hgetall(hz.keys.job(spec.id))
    assert stored["name"] == "naïve.job"
    assert stored["payload"] == spec.payload
    assert (stored["tries"], stored["timeout"]) == ("3", repr(0.1 + 0.2))
    assert stored["backoff"] == "[1e+20]"


def test_a_script_argument_of_another_type_is_refused_as_redis_py_refuses_it(hz) -> None:
    with pytest.raises(redis.DataError, match="must be str, int, float or bytes"):
        hz.scripts.call("progress", "some-job-id", True)


def test_index_stamps_stay_unique_and_increasing_when_the_clock_is_behind_the_last_stamp(hz, redis_client) -> None:
    """A push writes its stamp in the same call that reads the last one (SET ... GET); a stored
    stamp ahead of the server's clock (a clock set back, or many stamps in one microsecond) is
    still passed, one by one, and the clock keeps the last stamp handed out."""
    clock = hz.keys.clock()

    def push(n: int) -> list[int]:
        specs = [JobSpec(name="tests.noop", queue="stamps", payload='{"args":[],"kwargs":{}}') for _ in range(n)]
        hz.queue.push(specs)
        return [int(redis_client.hget(hz.keys.job(s.id), "index")) for s in specs]

    first = push(1)[0]
    assert int(redis_client.get(clock)) == first  # one stamp: the value the SET wrote
    ahead = first + 10**12  # about 11 days ahead of the server's clock
    redis_client.set(clock, ahead)
    single = push(1)
    bulk = push(5)
    assert single == [ahead + 1] and bulk == list(range(ahead + 2, ahead + 7))
    assert int(redis_client.get(clock)) == ahead + 6
    redis_client.set(clock, first)  # behind again: stamps come from the server's clock
    later = push(3)
    assert first < later[0] < later[1] < later[2] < ahead and int(redis_client.get(clock)) == later[2]


def test_wake_up_tokens_are_capped_for_single_and_bulk_pushes(hz, redis_client) -> None:
    wake = hz.keys.wake("tokens")
    spec = lambda: JobSpec(name="tests.noop", queue="tokens", payload='{"args":[],"kwargs":{}}')  # noqa: E731
    hz.queue.push([spec() for _ in range(scripts.WAKE_CAP - 2)])
    assert redis_client.llen(wake) == scripts.WAKE_CAP - 2
    for _ in range(4):
        hz.queue.push([spec()])
    assert redis_client.llen(wake) == scripts.WAKE_CAP
    hz.queue.push([spec() for _ in range(scripts.WAKE_CAP + 10)])
    assert redis_client.llen(wake) == scripts.WAKE_CAP
    assert redis_client.llen(hz.keys.queue("tokens")) == 2 * scripts.WAKE_CAP + 12


def test_every_script_that_stamps_writes_its_last_stamp() -> None:
    """A call's first stamp stores NOW_US; one that handed out later stamps must store the last
    (flush_clock, which push_jobs calls), or a later call could hand out the same stamp again."""
    from importlib import resources

    stamping = [name for name in scripts.script_names() if "local function stamp()" in scripts.source(name)]
    assert {"push", "finish", "reserve", "create", "retry"} <= set(stamping)
    for name in stamping:
        body = (resources.files("horizon") / "lua" / f"{name}.lua").read_text()
        assert "flush_clock()" in body or "push_jobs(" in body, f"{name} stamps without flush_clock()"



def test_calls_redis_refuses_for_now_raise_writes_refused_naming_the_cause(tmp_path) -> None:
    """A read-only replica (a failed-over master: REPLICAOF a server that is gone), maxmemory (OOM)
    and a script running past lua-time-limit (BUSY): script calls and direct commands alike come
    out as WritesRefused, a ConnectionError the worker and the loops wait out, and the refused call
    wrote nothing. Other script errors stay what they were."""
    import threading
    import time

    from horizon.config import settings_from_dict
    from horizon.connection import WritesRefused, as_refusal
    from horizon.context import Horizon
    from horizon.embedded import EmbeddedRedis, free_port
    from horizon.queue import JobNotFound

    def push() -> list[str]:
        return hz.queue.push([JobSpec(name="tests.noop", queue="default", payload='{"args":[],"kwargs":{}}')])

    server = EmbeddedRedis(str(tmp_path / "redis")).start()
    hz = Horizon(settings_from_dict({"prefix": "refusals", "redis": {"url": server.url}}))
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        admin.replicaof("127.0.0.1", free_port())  # a replica of a master that is gone: read-only
        try:
            with pytest.raises(WritesRefused, match="a read-only replica") as refused:
                push()
            assert isinstance(refused.value, redis.ConnectionError)
            with pytest.raises(redis.ResponseError) as direct:
                hz.redis.set("x", 1)
            assert as_refusal(direct.value).reason == "a read-only replica"
        finally:
            admin.replicaof("NO", "ONE")
        assert admin.dbsize() == 0

        admin.config_set("maxmemory", "1")
        try:
            with pytest.raises(WritesRefused, match=r"out of memory \(maxmemory reached\)"):
                push()
        finally:
            admin.config_set("maxmemory", "0")
        assert admin.dbsize() == 0

        admin.config_set("lua-time-limit", "50")
        spinner = redis.Redis.from_url(server.url)
        busy = threading.Thread(target=_swallow, args=(spinner.eval, "while true do end", 0))
        busy.start()
        try:
            deadline = time.monotonic() + 10
            while True:  # polls until the spinning script passes lua-time-limit and Redis answers BUSY
                try:
                    admin.ping()
                except redis.ResponseError as exc:
                    assert as_refusal(exc).reason == "busy running a script"
                    break
                assert time.monotonic() < deadline, "no BUSY reply"
            with pytest.raises(WritesRefused, match="busy running a script"):
                push()
        finally:
            admin.script_kill()
            busy.join(10)
            spinner.close()

        assert push() and admin.llen(hz.keys.queue("default")) == 1  # accepted again
        with pytest.raises(JobNotFound):  # a script's own error is not a refusal
            hz.queue.retry("no-such-job")
    finally:
        admin.close()
        hz.close()
        server.stop()


def _swallow(call, *args) -> None:
    try:
        call(*args)
    except redis.RedisError:
        pass
