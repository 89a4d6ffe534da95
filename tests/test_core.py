"""Core engine against a real redis-server and real worker processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from horizon.payload import PayloadError
from tests import sample_jobs
from tests.helpers import wait_for


def job_hash(hz, job_id):
    return hz.redis.hgetall(hz.keys.job(job_id))


def test_dispatch_writes_one_pending_job(hz, redis_client):
    job_id = sample_jobs.add.dispatch("k", 1, 2)
    h = job_hash(hz, job_id)
    assert h["status"] == "pending"
    assert h["name"] == "tests.add"
    assert json.loads(h["payload"]) == {"args": ["k", 1, 2], "kwargs": {}}
    assert redis_client.lrange(hz.keys.queue("default"), 0, -1) == [job_id]


def test_non_json_argument_rejected_and_nothing_written(hz, redis_client, prefix):
    with pytest.raises(PayloadError, match=r"args\[1\].*object"):
        sample_jobs.record.dispatch("k", object())
    with pytest.raises(PayloadError, match="kwargs"):
        sample_jobs.record.dispatch("k", value={1, 2})
    with pytest.raises(PayloadError):
        sample_jobs.record.dispatch_many([(("a",), {}), (("b", float("nan")), {})])
    assert list(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == []


@pytest.mark.parametrize("queue", ["q:delayed", "", "a b", "a,b", "a/b", "{q}", "q" * 101, 7, ".", ".."])
def test_a_queue_name_no_worker_could_serve_is_refused_and_nothing_written(hz, redis_client, prefix, queue):
    """Queue names are checked where they enter (the job decorator, options(), the config, the
    API, the CLI): 1 to 100 characters without whitespace, ',', '/', ':', '{' or '}'. Before, any
    string went: '' quietly meant 'default', 'a,b' could not be named in a worker's --queue list,
    'a/b' had no API route, and 'q:delayed' ran its push script into queue q's delayed set, which
    stopped it half-way (WRONGTYPE) and left a job pending in no queue."""
    from horizon import job
    from horizon.keys import QueueNameError

    sample_jobs.noop.options(queue="q", delay=60).dispatch()  # queue q's delayed set exists
    written = set(redis_client.scan_iter(match=f"{{{prefix}}}:*"))
    with pytest.raises(QueueNameError, match="invalid queue name"):
        sample_jobs.noop.options(queue=queue).dispatch()
    with pytest.raises(QueueNameError):
        sample_jobs.noop.options(queue=queue).dispatch_many([((), {})])
    with pytest.raises(QueueNameError):
        job(name="tests.bad_queue", queue=queue)(lambda: None)
    assert set(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == written


def test_an_argument_with_a_lone_surrogate_reaches_the_job_unchanged(hz, redis_client):
    """A str decoded with surrogateescape (an undecodable file name) holds a lone surrogate, which
    UTF-8 cannot carry: before, the dispatch died in redis-py with UnicodeEncodeError. Now the
    payload escapes it (JSON \\udcxx) and the worker decodes the same str; a queue name holding one
    is refused."""
    from horizon import payload
    from horizon.keys import QueueNameError

    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    job_id = sample_jobs.record.dispatch("k", name)
    stored = redis_client.hget(hz.keys.job(job_id), "payload")
    assert stored.isascii() and payload.decode(stored) == (["k", name], {})
    assert payload.decode(payload.encode(["é"])) == (["é"], {}) and "é" in payload.encode(["é"])  # UTF-8 kept
    with pytest.raises(QueueNameError):
        sample_jobs.noop.options(queue=name).dispatch()


def test_cli_refuses_queue_names_no_worker_could_serve(procs):
    for argv in (["work", "--queue", "a,b:c"], ["dispatch", "tests.noop", "--queue", "a/b"]):
        result = procs.run(*argv)
        assert result.returncode == 2 and "invalid queue name" in result.stderr, (argv, result.stderr)


def test_plain_dispatch_writes_what_a_dispatch_with_options_writes(hz, config_data):
    """A plain dispatch reuses the fields it worked out for the configuration: the same record as
    the general path, and a new configuration's defaults as soon as it is configured."""
    from horizon.config import settings_from_dict
    from horizon.context import configure

    plain = sample_jobs.add.dispatch("k", 1, 2)
    general = hz.queue.push([sample_jobs.add.options().spec(("k", 1, 2), {}, hz)])[0]
    a, b = job_hash(hz, plain), job_hash(hz, general)
    assert plain != general
    for volatile in ("id", "pushed_at", "index"):
        a.pop(volatile), b.pop(volatile)
    assert a == b and a["timeout"] == "30.0"
    data = dict(config_data, defaults={"supervisor-1": {"queue": ["default"], "timeout": 7, "tries": 4}})
    other = configure(settings_from_dict(data))
    try:
        job_id = sample_jobs.add.dispatch("k", 1, 2)
        h = other.redis.hgetall(other.keys.job(job_id))
        assert (h["timeout"], h["tries"], h["status"]) == ("7.0", "4", "pending")
    finally:
        other.close()


def test_dispatch_many_applies_the_options_to_every_job(hz, redis_client):
    before = time.time()
    ids = sample_jobs.add.options(queue="bulk", delay=60, tries=3, tags=["vip"]).dispatch_many(
        [(("k", i, 0), {}) for i in range(3)]
    )
    records = [job_hash(hz, job_id) for job_id in ids]
    assert [json.loads(h["payload"])["args"] for h in records] == [["k", i, 0] for i in range(3)]
    for job_id, h in zip(ids, records, strict=True):
        fields = (h["id"], h["queue"], h["status"], h["tries"], h["tags"])
        assert fields == (job_id, "bulk", "scheduled", "3", '["vip"]')
        assert float(h["available_at"]) >= before + 60
    assert redis_client.zcard(hz.keys.delayed("bulk")) == 3
    assert sample_jobs.add.dispatch_many([]) == []


def test_a_delay_counts_from_each_dispatch(hz):
    delayed = sample_jobs.add.options(delay=60)
    first = float(job_hash(hz, delayed.dispatch("k", 1, 2))["available_at"])
    wait_for(lambda: time.time() > first - 60, message="the clock did not move")
    before = time.time()
    second = float(job_hash(hz, delayed.dispatch("k", 1, 2))["available_at"])
    assert second >= before + 60 > first


def test_job_ids_are_unique_and_a_forked_child_draws_its_own(hz):
    from horizon.queue import next_job_id

    ids = {next_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 36 and i[14] == "4" and i[19] in "89ab" for i in ids)
    next_job_id()  # the pool now holds ids the parent has not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, ",".join(next_job_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split(","))
    parent = {next_job_id() for _ in range(100)}
    assert len(child) == 100 and not child & parent and not child & ids


def _child_exit(pid: int, timeout: float = 10.0) -> int | None:
    """The forked child's exit status, or None if it still runs after ``timeout`` (it is killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_child_forked_while_another_thread_configures_does_not_hang(hz):
    """configure() ran under a module lock; a child forked while another thread held it (an app's
    first dispatch in a background thread, the first build taking tens of ms) waited on that lock
    forever, as no thread of the child would ever release it."""
    import threading

    from horizon import context

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with context._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:
            try:
                context.reset()
                context.configure(hz.settings)
                sample_jobs.noop.dispatch()
            finally:
                os._exit(0)
        assert _child_exit(pid) == 0, "the forked child hung on the configure lock"
    finally:
        release.set()
        holder.join()


def test_a_forked_child_keeps_the_client_the_app_configured(hz, redis_url, prefix):
    """configure(settings, client=...) chose a Redis; a forked child configured itself again from
    the settings alone and wrote its jobs to the settings' Redis instead."""
    import redis

    from horizon import context
    from horizon.keys import Keys

    other = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/3", decode_responses=True)
    context.configure(hz.settings, client=other)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, sample_jobs.noop.dispatch().encode())
        finally:
            os._exit(0)
    os.close(write)
    assert _child_exit(pid) == 0
    with os.fdopen(read) as pipe:
        job_id = pipe.read()
    key = Keys(prefix).job(job_id)
    try:
        assert other.exists(key) == 1 and hz.redis.exists(key) == 0
    finally:
        other.flushdb()
        other.close()


@pytest.mark.parametrize("tags, named", [
    ([None], "tags must be non-empty strings, got None"),
    (["vip", True], "tags must be non-empty strings, got True"),
    ([7], "got 7"),
    ([""], "got ''"),
    ("vip", "tags must be a list of strings, got str 'vip'"),
    (["x" * 256], "at most 255 characters"),
])
def test_explicit_tags_that_are_not_strings_are_refused_before_anything_is_written(
    hz, redis_client, prefix, tags, named
):
    """options(tags=[None]) used to write a job hash and then fail in the push script with a
    raw ResponseError (the job stayed, in no queue, forever), or, with no tag monitored, store
    [null], which later crashed the worker's finish script; "vip" became ['v', 'i', 'p']."""
    from horizon.jobs import OptionError

    hz.redis.sadd(hz.keys.monitoring(), "vip")  # a monitored tag: the push indexes tags
    before = set(redis_client.scan_iter(match=f"{{{prefix}}}:*"))
    with pytest.raises(OptionError, match=re.escape(named)):
        sample_jobs.noop.options(tags=tags).dispatch()
    assert set(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == before


def test_dispatch_many_after_a_parent_checks_every_payload_first(hz, redis_client, prefix):
    """dispatch_many with after= (or an idempotency key) dispatches one by one; a bad payload in
    the third call left the first two written."""
    parent = sample_jobs.noop.dispatch()
    before = set(redis_client.scan_iter(match=f"{{{prefix}}}:*"))
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        sample_jobs.add.options(after=parent).dispatch_many([(("k", 1, 1), {}), (("k", 2, 2), {}),
                                                            (("k", object(), 3), {})])
    assert set(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == before


def test_argument_that_refers_to_itself_is_refused(hz, redis_client, prefix):
    loop: list = []
    loop.append(loop)
    with pytest.raises(PayloadError, match="refer to themselves"):
        sample_jobs.add.dispatch("k", loop, 1)
    with pytest.raises(PayloadError, match=r"args\[1\].*float nan"):
        sample_jobs.add.dispatch("k", float("nan"), 1)
    assert list(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == []


@pytest.mark.parametrize(
    "value, named",
    [
        ({1: "a"}, r"args\[1\] is not JSON-serialisable: dict key 1 of type int"),
        ({None: 1, "b": 2}, "dict key None of type NoneType"),
        ({"a": [{"b": {2.5: 3}}]}, r"args\[1\]\['a'\]\[0\]\['b'\] is not JSON-serialisable: dict key 2.5 "),
        ({1: "a", "1": "b"}, "dict key 1 of type int"),  # would have lost a value
        (10**5000, r"args\[1\] is not JSON-serialisable: int of more than \d+ digits"),
    ],
    ids=["int-key", "none-key", "nested-float-key", "colliding-keys", "huge-int"],
)
def test_a_value_json_would_change_or_cannot_write_is_refused_by_name(hz, redis_client, prefix, value, named):
    """JSON writes an int, float, bool or None dict key as a string: the job would get {"1": "a"}
    for {1: "a"}, and {1: "a", "1": "b"} would lose "a". Before, such keys went through silently,
    and an int too long to write was reported without its argument's name."""
    with pytest.raises(PayloadError, match=named):
        sample_jobs.record.dispatch("k", value)
    assert list(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == []


def test_a_payload_as_deep_as_dispatch_takes_runs_in_the_worker(hz, procs, redis_client):
    """Dispatch refuses nesting deeper than its recursion limit allows at its stack depth; the
    worker decodes at a deeper stack, so a payload just under that limit failed there with
    RecursionError (an ordinary failed attempt, retried). It now decodes."""
    from horizon.queue import JobSpec

    key = f"depth-{time.time()}"
    # the deepest payload an application's top-level code can dispatch
    probe = (
        "import sys\nfrom horizon import payload\n"
        "for n in range(sys.getrecursionlimit(), 0, -1):\n"
        "    value = []\n"
        "    for _ in range(n): value = [value]\n"
        "    try: payload.encode(['k', value])\n"
        "    except payload.PayloadError: continue\n"
        "    print(n); break\n"
    )
    deepest = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)
    nested = "[" * (deepest + 1) + "]" * (deepest + 1)
    text = '{"args":["' + key + '",' + nested + '],"kwargs":{}}'
    (job_id,) = hz.queue.push([JobSpec(name="tests.depth", queue="default", payload=text, tries=1)])
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert job_hash(hz, job_id)["status"] == "completed", job_hash(hz, job_id).get("exception")
    assert redis_client.lrange(key, 0, -1) == [str(deepest)]
    redis_client.delete(key)


@pytest.mark.parametrize(
    "text",
    [
        '{"args":[1,"x",[2.5,null,true]],"kwargs":{"k":{"n":-3e-7}}}',
        ' \n{"args":[],"kwargs":{}}\t ',  # whitespace around it
        '{"args":["\\u00e9\\ud83d\\ude00"],"kwargs":{}}',
        '{"args":[NaN],"kwargs":{}}',  # json.loads takes NaN; so does decode
        '{"args":[],"kwargs":{}} x',  # extra data
        '{"args":[',
        "",
        "[1, 2]",
        '{"args":{},"kwargs":{}}',
    ],
)
def test_payload_decode_answers_as_json_loads_does(text):
    """decode() calls the C scanner directly; its results and errors are json.loads's."""
    from horizon import payload

    try:
        data = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as raised:
            payload.decode(text)
        assert str(raised.value) == str(exc)
        return
    if not isinstance(data, dict):
        with pytest.raises(ValueError, match="not a JSON object"):
            payload.decode(text)
    elif not isinstance(data["args"], list):
        with pytest.raises(ValueError, match="args must be a list"):
            payload.decode(text)
    else:
        args, kwargs = payload.decode(text)
        assert json.dumps([args, kwargs]) == json.dumps([data["args"], data["kwargs"]])


def test_a_push_run_again_leaves_the_job_alone(hz, redis_client):
    """A push whose reply was lost may be run again with the same id (the client's retry): the
    second run writes nothing, even when a worker has reserved the job in between."""
    from horizon.queue import JobSpec

    spec = JobSpec(name="tests.noop", queue="again", payload='{"args":[],"kwargs":{}}')
    hz.queue.push([spec])
    job, _ = hz.queue.reserve(["again"], worker="sup:1")
    before = job_hash(hz, spec.id)
    assert hz.scripts.call("push", 1, *spec.argv()) == 0
    assert job_hash(hz, spec.id) == before and before["status"] == "reserved"
    assert redis_client.llen(hz.keys.queue("again")) == 0  # not queued a second time
    other = JobSpec(name="tests.noop", queue="again", payload='{"args":[],"kwargs":{}}')
    assert hz.scripts.call("push", 2, *spec.argv(), *other.argv()) == 1  # the new one is written
    assert redis_client.lrange(hz.keys.queue("again"), 0, -1) == [other.id]


def test_a_retry_run_again_makes_no_second_copy(hz, redis_client):
    """A retry whose reply was lost may be run again with the same new id: the copy it made is
    left as it is (here already reserved), and the original lists it once."""
    from horizon.queue import JobSpec

    spec = JobSpec(name="tests.noop", queue="redo", payload='{"args":[],"kwargs":{}}')
    hz.queue.push([spec])
    job, _ = hz.queue.reserve(["redo"])
    hz.queue.finish_many([(job, "failed_final", 1.0, '{"class":"E","message":"m","traceback":""}')])
    copy = hz.queue.retry(spec.id)
    taken, _ = hz.queue.reserve(["redo"], worker="sup:1")
    assert taken.id == copy
    assert hz.scripts.call("retry", spec.id, copy) == copy  # run again with the same new id
    assert job_hash(hz, copy)["status"] == "reserved"
    assert redis_client.llen(hz.keys.queue("redo")) == 0
    assert [r["id"] for r in json.loads(job_hash(hz, spec.id)["retried_by"])] == [copy]


def test_a_create_run_again_replays(hz, redis_client):
    """The API's create script run again with the same job id (its reply was lost) writes nothing
    and answers as a replay, even with no idempotency key."""
    from horizon.queue import JobSpec

    spec = JobSpec(name="tests.noop", queue="made", payload='{"args":[],"kwargs":{}}')
    assert hz.scripts.call("create", "", "h", 60, "", *spec.argv())[0] == "created"
    hz.queue.reserve(["made"], worker="sup:1")
    assert hz.scripts.call("create", "", "h", 60, "", *spec.argv()) == ["replay", spec.id]
    assert job_hash(hz, spec.id)["status"] == "reserved"
    assert redis_client.llen(hz.keys.queue("made")) == 0


def test_a_queue_retry_run_again_reports_the_copies_it_made(hz, redis_client):
    """A queue's retry-all call run again with the same pairs makes no second copy and still
    answers with the copies it made (the caller reports how many jobs were retried)."""
    from horizon.queue import JobSpec

    specs = [JobSpec(name="tests.noop", queue="redo-all", payload='{"args":[],"kwargs":{}}') for _ in range(2)]
    hz.queue.push(specs)
    for _ in specs:
        job, _ = hz.queue.reserve(["redo-all"])
        hz.queue.finish_many([(job, "failed_final", 1.0, '{"class":"E","message":"m","traceback":""}')])
    pairs = [a for i, s in enumerate(specs) for a in (s.id, f"copy-{i}")]
    assert hz.scripts.call("retry_queue", "redo-all", *pairs) == ["copy-0", "copy-1"]
    hz.queue.reserve(["redo-all"], worker="sup:1")
    assert hz.scripts.call("retry_queue", "redo-all", *pairs) == ["copy-0", "copy-1"]
    assert redis_client.llen(hz.keys.queue("redo-all")) == 1  # one copy reserved, one queued, once
    for i, spec in enumerate(specs):
        assert [r["id"] for r in json.loads(job_hash(hz, spec.id)["retried_by"])] == [f"copy-{i}"]


def test_a_schedule_push_run_again_answers_pushed(hz, redis_client):
    """push_once run again by the same owner for the same occurrence (its reply was lost) answers
    that it pushed, and pushes nothing more; another owner is still refused."""
    from horizon.queue import JobSpec

    spec = JobSpec(name="tests.noop", queue="timed", payload='{"args":[],"kwargs":{}}')
    assert hz.queue.push_once(spec, "schedule:s:1", "master-a", 60_000)
    assert hz.queue.push_once(spec, "schedule:s:1", "master-a", 60_000)  # the same call again
    assert not hz.queue.push_once(spec, "schedule:s:1", "master-b", 60_000)
    assert redis_client.lrange(hz.keys.queue("timed"), 0, -1) == [spec.id]
    other = JobSpec(name="tests.noop", queue="timed", payload='{"args":[],"kwargs":{}}')
    assert not hz.queue.push_once(other, "schedule:s:1", "master-b", 60_000)
    assert not hz.queue.push_once(other, "schedule:s:1", "master-a", 60_000)  # lock ours, job not written


def test_automatic_and_explicit_tags(hz):
    job_id = sample_jobs.record.options(tags=["vip"]).dispatch("user-7")
    assert json.loads(job_hash(hz, job_id)["tags"]) == ["key:user-7", "vip"]


def test_dispatch_many_pushes_in_order(hz, redis_client):
    ids = sample_jobs.add.dispatch_many([(("k", i, 0), {}) for i in range(2500)])
    assert len(set(ids)) == 2500
    assert redis_client.llen(hz.keys.queue("default")) == 2500
    assert redis_client.lindex(hz.keys.queue("default"), -1) == ids[0]


def test_success_runs_job_and_records_completion(hz, procs, redis_client):
    job_id = sample_jobs.add.dispatch("sum", 2, 3)
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert redis_client.lrange("sum", 0, -1) == ["5"]
    h = job_hash(hz, job_id)
    assert h["status"] == "completed"
    assert h["attempts"] == "1"
    assert float(h["completed_at"]) >= float(h["reserved_at"]) >= float(h["pushed_at"])
    redis_client.delete("sum")


def test_failure_retries_with_backoff_then_fails(hz, procs, redis_client):
    key = f"fail-{os.getpid()}-{time.time()}"
    job_id = sample_jobs.fail.options(tries=3, backoff=[0.3, 0.6]).dispatch(key)
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    runs = [float(t) for t in redis_client.lrange(key, 0, -1)]
    assert len(runs) == 3
    assert runs[1] - runs[0] >= 0.29
    assert runs[2] - runs[1] >= 0.59
    h = job_hash(hz, job_id)
    assert h["status"] == "failed"
    assert h["attempts"] == "3"
    exc = json.loads(h["exception"])
    assert exc["class"] == "ValueError"
    assert exc["message"] == "boom: " + key
    assert "Traceback" in exc["traceback"]
    assert redis_client.zscore(hz.keys.index("failed"), job_id) is not None
    redis_client.delete(key)


def test_hung_job_is_stopped_by_its_timeout(hz, procs, redis_client):
    key = f"sleep-{time.time()}"
    job_id = sample_jobs.sleep.options(timeout=0.5).dispatch(key, 30)
    start = time.monotonic()
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 20
    h = job_hash(hz, job_id)
    assert h["status"] == "failed"
    assert json.loads(h["exception"])["class"] == "horizon.worker.JobTimeout"
    assert redis_client.lrange(key, 0, -1)[-1].startswith("start:")
    redis_client.delete(key)


def test_delayed_job_starts_on_time(hz, procs, redis_client):
    key = f"delayed-{time.time()}"
    worker = procs.horizon("work")
    due = time.time() + 1.5
    job_id = sample_jobs.add.options(run_at=due).dispatch(key, 1, 1)
    assert job_hash(hz, job_id)["status"] == "scheduled"
    wait_for(lambda: redis_client.llen(key) == 1, timeout=10)
    h = job_hash(hz, job_id)
    started = float(h["reserved_at"])
    assert due <= started < due + 1.0, started - due
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    redis_client.delete(key)


def test_a_delayed_job_wakes_an_idle_worker_blocked_past_its_time(hz, procs, redis_client):
    """An idle worker blocks until the next due time it knew of (else 5 s): a job delayed to an
    earlier time wakes it to look again. Before, with no master promoting due jobs, each of these
    started up to 5 s late (the worker had just blocked for 5 s when it was dispatched)."""
    key = f"delayed-{time.time()}"
    worker = procs.horizon("work")
    late = []
    for n in range(3):
        job_id = sample_jobs.add.options(delay=0.3).dispatch(key, n, 0)
        wait_for(lambda n=n: redis_client.llen(key) == n + 1, timeout=15)
        h = job_hash(hz, job_id)
        late.append(float(h["reserved_at"]) - float(h["available_at"]))
    print("delayed jobs started late by", ", ".join(f"{s:.3f}s" for s in late))
    assert all(0 <= s < 1.0 for s in late), late  # SPEC §6: within a second of their time
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    redis_client.delete(key)


def test_unknown_job_name_fails_that_job_and_worker_goes_on(hz, procs, redis_client):
    from horizon.queue import JobSpec

    bad = hz.queue.push([JobSpec(name="no.such.job", queue="default", payload='{"args":[],"kwargs":{}}', tries=3)])[0]
    good = sample_jobs.add.dispatch("after-unknown", 1, 1)
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    h = job_hash(hz, bad)
    assert h["status"] == "failed"
    assert h["attempts"] == "1"
    assert "no.such.job" in json.loads(h["exception"])["message"]
    assert job_hash(hz, good)["status"] == "completed"
    redis_client.delete("after-unknown")


def test_a_job_that_calls_sys_exit_or_raises_keyboard_interrupt_fails_and_the_worker_goes_on(hz, procs):
    """SystemExit and KeyboardInterrupt raised by a job's code are the job's failure, with their
    class and traceback; the worker runs the next job. Before, they ended the worker (exit 3, or 1
    with a traceback) or, for sys.exit(0), left the job reserved until its window ended."""
    failing = {
        sample_jobs.exit_.dispatch(3): ("SystemExit", "3"),
        sample_jobs.exit_.dispatch(0): ("SystemExit", "0"),
        sample_jobs.interrupt.dispatch(): ("KeyboardInterrupt", ""),
    }
    good = sample_jobs.noop.dispatch()
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for job_id, (cls, message) in failing.items():
        h = job_hash(hz, job_id)
        assert (h["status"], h["attempts"]) == ("failed", "1"), h
        exception = json.loads(h["exception"])
        assert (exception["class"], exception["message"]) == (cls, message)
        assert "sample_jobs.py" in exception["traceback"]
    assert job_hash(hz, good)["status"] == "completed"


def test_what_a_job_raises_or_returns_is_kept_bounded_and_never_stops_the_worker(hz, procs):
    """An exception whose str() and repr() raise, a 5 MB exception message, a result whose repr()
    raises and a 100,000-character result: each job's record says what happened, within bounds, as
    valid JSON, and the worker runs the next job. Before, the first and third crashed the worker
    (exit 1; the attempt charged as a lost worker), and the message was kept and logged whole."""
    from horizon.worker import MESSAGE_LIMIT, OUTPUT_LIMIT

    unprintable = sample_jobs.unprintable.dispatch()
    huge = sample_jobs.huge_error.dispatch(5_000_000)
    no_repr = sample_jobs.odd_result.dispatch("no-repr")
    long_result = sample_jobs.odd_result.dispatch("long")
    good = sample_jobs.noop.dispatch()
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(result.stderr) < 10_000  # the log names the huge message, it does not hold it

    h = job_hash(hz, unprintable)
    exception = json.loads(h["exception"])
    assert (h["status"], exception["class"]) == ("failed", "tests.sample_jobs.Unprintable")
    assert exception["message"] == "<Unprintable object: its str() failed>"
    assert "raise Unprintable()" in exception["traceback"]

    h = job_hash(hz, huge)
    message = json.loads(h["exception"])["message"]
    assert h["status"] == "failed" and len(h["exception"]) < 40_000
    assert message == "x" * MESSAGE_LIMIT + "… (5000000 characters in all)"

    assert (job_hash(hz, no_repr)["status"], json.loads(job_hash(hz, no_repr)["output"])) == (
        "completed", "<_NoRepr object: its repr() failed>")
    h = job_hash(hz, long_result)
    output = json.loads(h["output"])
    assert h["status"] == "completed" and output.startswith('"yyy') and len(output) < OUTPUT_LIMIT + 100
    assert output.endswith("… (100002 characters in all)")
    assert job_hash(hz, good)["status"] == "completed"


def test_term_lets_the_running_job_finish(hz, procs, redis_client):
    key = f"term-{time.time()}"
    job_id = sample_jobs.sleep.dispatch(key, 1.0)
    worker = procs.horizon("work")
    wait_for(lambda: redis_client.llen(key) >= 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert redis_client.lrange(key, 0, -1)[-1] == "end"
    assert job_hash(hz, job_id)["status"] == "completed"
    redis_client.delete(key)


def test_second_term_puts_the_job_back(hz, procs, redis_client):
    key = f"term2-{time.time()}"
    job_id = sample_jobs.sleep.dispatch(key, 30)
    worker = procs.horizon("work")
    wait_for(lambda: redis_client.llen(key) >= 1)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # two separate signals, not one coalesced
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    h = job_hash(hz, job_id)
    assert h["status"] == "pending"
    assert h["attempts"] == "0"
    redis_client.delete(key)


@pytest.fixture
def short_margin(config_data):
    config_data["reservation_margin"] = 2


def test_killed_worker_job_runs_again_after_deadline(short_margin, hz, procs, redis_client):
    key = f"kill-{time.time()}"
    hz_margin = hz.settings.reservation_margin
    job_id = sample_jobs.sleep.options(timeout=1, tries=2).dispatch(key, 0.5)
    # make the first attempt hang past kill time: a long sleep that we kill -9
    hz.redis.hset(hz.keys.job(job_id), "payload", json.dumps({"args": [key, 30], "kwargs": {}}))
    first = procs.horizon("work")
    wait_for(lambda: redis_client.llen(key) >= 1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert job_hash(hz, job_id)["status"] == "reserved"
    hz.redis.hset(hz.keys.job(job_id), "payload", json.dumps({"args": [key, 0.1], "kwargs": {}}))
    second = procs.horizon("work")
    wait_for(lambda: job_hash(hz, job_id)["status"] == "completed", timeout=1 + hz_margin + 10)
    h = job_hash(hz, job_id)
    assert h["attempts"] == "2"
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=15)
    redis_client.delete(key)


def test_expired_reservation_without_tries_left_fails_as_worker_lost(hz, redis_client):
    from horizon.queue import JobSpec

    job_id = hz.queue.push(
        [JobSpec(name="tests.noop", queue="lost", payload='{"args":[],"kwargs":{}}', tries=1, timeout=1)]
    )[0]
    job, _ = hz.queue.reserve(["lost"])
    assert job.id == job_id
    # the worker "dies": nobody finishes; move its deadline into the past and run maintenance
    redis_client.zadd(hz.keys.reserved("lost"), {job_id: time.time() - 1})
    assert hz.queue.maintain() == (0, 1)
    h = job_hash(hz, job_id)
    assert h["status"] == "failed"
    assert json.loads(h["exception"])["class"] == "WorkerLost"


def test_cli_dispatch_and_retry(hz, procs, redis_client):
    key = f"cli-{time.time()}"
    out = procs.run("dispatch", "tests.fail", "--json", json.dumps({"args": [key]}))
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert job_hash(hz, job_id)["name"] == "tests.fail"
    assert procs.run("work", "--stop-when-empty").returncode == 0
    assert job_hash(hz, job_id)["status"] == "failed"
    out = procs.run("retry", job_id)
    assert out.returncode == 0, out.stderr
    copy = out.stdout.strip()
    assert job_hash(hz, copy)["retry_of"] == job_id
    retried = json.loads(job_hash(hz, job_id)["retried_by"])
    assert [r["id"] for r in retried] == [copy]
    assert retried[0]["status"] == "pending"
    assert procs.run("work", "--stop-when-empty").returncode == 0
    assert json.loads(job_hash(hz, job_id)["retried_by"])[0]["status"] == "failed"
    redis_client.delete(key)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dispatch", "no.such", "--json", "{}"], "unknown job name 'no.such'"),
        (["dispatch", "tests.add", "--json", "{not json"], "not valid JSON"),
        (["dispatch", "tests.add", "--json", '{"args": 1}'], '"args" must be a list'),
        # before: a traceback (exit 1) for NaN / 1e400, which json.loads takes; and each option
        # below exited 0 with a job that could never run (an infinite delay, a negative timeout)
        (["dispatch", "tests.add", "--json", '{"args": ["k", NaN, 1]}'], "args[1] is not JSON-serialisable: float nan"),
        (["dispatch", "tests.add", "--json", '{"kwargs": {"a": 1e400}}'], "float inf"),
        (["dispatch", "tests.add", "--timeout", "-5"], "--timeout must be from 0.001 to 86400 seconds"),
        (["dispatch", "tests.add", "--timeout", "0"], "--timeout must be from 0.001"),
        (["dispatch", "tests.add", "--tries", "-1"], "--tries must be an integer from 1 to 1000"),
        (["dispatch", "tests.add", "--delay", "inf"], "--delay must be from 0 to 31622400 seconds"),
        (["dispatch", "tests.add", "--delay", "nan"], "--delay must be from 0"),
        (["dispatch", "tests.add", "--delay", "-3"], "--delay must be from 0"),
        (["clear", "", "--force"], "QUEUE: "),  # before: a traceback
        (["clear", "a b", "--force"], "invalid queue name"),  # before: "cleared 0 jobs"
    ],
)
def test_cli_dispatch_bad_input_exits_2(procs, redis_client, prefix, argv, message):
    out = procs.run(*argv)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert list(redis_client.scan_iter(match=f"{{{prefix}}}:*")) == []  # nothing written


@pytest.mark.parametrize(
    "options",
    [{"delay": float("inf")}, {"delay": float("nan")}, {"delay": -1}, {"delay": 10**400}, {"run_at": float("inf")},
     {"timeout": 0}, {"timeout": -5}, {"tries": 0}, {"tries": True}, {"backoff": [1, -2]}, {"backoff": []}],
    ids=lambda options: repr(options)[:30],
)
def test_dispatch_options_out_of_range_name_the_option(hz, options):
    """The Python API takes the API's ranges: a job that could never run is refused at once."""
    from horizon.jobs import OptionError

    (name,) = options
    with pytest.raises(OptionError, match=f"^{name} must be"):
        sample_jobs.add.options(**options)


def test_progress_is_recorded(hz, procs, redis_client):
    job_id = sample_jobs.report_progress.dispatch("prog")
    assert procs.run("work", "--stop-when-empty").returncode == 0
    assert float(job_hash(hz, job_id)["progress"]) == 0.5
    redis_client.delete("prog")


@pytest.mark.parametrize("how", ["handlers", "blocked"])
def test_a_job_that_takes_over_the_workers_signals_does_not_disarm_later_jobs(hz, procs, redis_client, how):
    """A job that set its own SIGALRM/SIGTERM handler, or blocked SIGALRM, and returned left every
    later job of that worker without its timeout (a 5 s sleep with a 0.5 s timeout completed; a
    longer one ran on past its reservation while another worker ran it again) and a worker that
    ignored SIGTERM. What the job changed is now put back after it."""
    key = f"taken-{time.time()}"
    sample_jobs.take_signals.dispatch(how)
    hung = sample_jobs.sleep.options(timeout=0.5).dispatch(key, 5)
    result = procs.run("work", "--stop-when-empty")
    assert result.returncode == 0, result.stderr
    assert "took over the worker's" in result.stderr and "restored for the next jobs" in result.stderr
    h = job_hash(hz, hung)
    assert h["status"] == "failed", h
    assert json.loads(h["exception"])["class"] == "horizon.worker.JobTimeout"
    if how == "handlers":  # and SIGTERM stops the worker again once such a job has run
        taker = sample_jobs.take_signals.dispatch(how)
        worker = procs.horizon("work", stderr=subprocess.DEVNULL)
        wait_for(lambda: job_hash(hz, taker).get("status") == "completed", timeout=15)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    redis_client.delete(key)


def test_progress_nan_is_refused_and_never_stored(hz, procs, redis_client):
    """progress(nan) was stored; every API list holding the job then answered "progress":NaN,
    which JSON parsers refuse."""
    from horizon.repositories.jobs import JobRepository

    job_id = sample_jobs.progress_value.dispatch("nan")
    assert procs.run("work", "--stop-when-empty").returncode == 0
    h = job_hash(hz, job_id)
    assert h["status"] == "failed" and "progress" not in h
    assert "progress must be a number from 0.0 to 1.0, got nan" in json.loads(h["exception"])["message"]
    redis_client.hset(hz.keys.job(job_id), "progress", "nan")  # as an older version stored it
    assert JobRepository(hz).get(job_id)["progress"] is None


def test_push_once_pushes_a_locked_occurrence_exactly_once(hz, redis_client):
    from horizon.queue import JobSpec

    specs = [JobSpec(name="tests.noop", queue="once", payload='{"args":[],"kwargs":{}}') for _ in range(3)]
    pushed = [
        hz.queue.push_once(spec, "schedule:nightly:1700000000.000", f"host-{i}", 60000) for i, spec in enumerate(specs)
    ]
    assert pushed == [True, False, False]
    assert redis_client.lrange(hz.keys.queue("once"), 0, -1) == [specs[0].id]
    assert not redis_client.exists(hz.keys.job(specs[1].id))
    assert redis_client.get(hz.keys.lock("schedule:nightly:1700000000.000")) == "host-0"


def test_job_ignoring_its_timeout_is_stopped_by_the_hard_timeout(hz, procs, redis_client):
    key = f"stubborn-{time.time()}"
    job_id = sample_jobs.stubborn.options(timeout=0.5).dispatch(key, 60)
    start = time.monotonic()
    result = procs.run("work", timeout=30)
    assert result.returncode == 70, result.stderr  # EXIT_HARD_TIMEOUT
    assert time.monotonic() - start < 20
    h = job_hash(hz, job_id)
    assert h["status"] == "failed"
    assert "ignored its timeout" in json.loads(h["exception"])["message"]
    redis_client.delete(key)
