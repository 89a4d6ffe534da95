"""Recurring schedules: occurrence tables, the missed policy, and exactly-once firing across masters."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from horizon import schedules
from horizon.config import ScheduleSettings
from horizon.jobs import job
from horizon.schedules import ScheduleError, ScheduleRepository, due, fire_due, occurrences, parse
from tests.helpers import wait_for


def ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def sched(**kw) -> ScheduleSettings:
    return ScheduleSettings(name=kw.pop("name", "s"), job=kw.pop("job", "tests.noop"), **kw)


@pytest.mark.parametrize(
    ("schedule", "last", "now", "expected"),
    [
        # 6 fields: seconds first
        (sched(cron="*/2 * * * * *"), "2024-01-01T00:00:00", "2024-01-01T00:00:04", ["00:00:02", "00:00:04"]),
        # 5 fields: minutes
        (sched(cron="* * * * *"), "2024-01-01T00:00:58", "2024-01-01T00:01:02", ["00:01:00"]),
        (sched(every=1.5), "2024-01-01T00:00:00", "2024-01-01T00:00:03", ["00:00:01.500000", "00:00:03"]),
        # missed (an outage: marker older than ON_TIME): skipped, or one run for all of them
        (sched(cron="0 * * * * *", missed="skip"), "2024-01-01T00:00:30", "2024-01-01T00:10:30", []),
        (sched(cron="0 * * * * *", missed="run_once"), "2024-01-01T00:00:30", "2024-01-01T00:10:30", ["00:10:00"]),
        (sched(cron="0 * * * * *", missed="run_once"), "2024-01-01T00:00:30", "2024-01-01T00:10:02", ["00:10:00"]),
        # masters kept checking (marker at most ON_TIME old, e.g. a slow check): everything since fires
        (sched(cron="* * * * * *"), "2024-01-01T00:00:00.500", "2024-01-01T00:00:05.500",
         ["00:00:01", "00:00:02", "00:00:03", "00:00:04", "00:00:05"]),
        # an outage: what fell due while no master ran is missed, even the last few seconds of it;
        # the occurrence due within CHECK_SLACK of the restart is on time
        (sched(cron="* * * * * *", missed="skip"), "2024-01-01T00:00:00.500", "2024-01-01T00:00:10.500",
         ["00:00:10"]),
        (sched(cron="* * * * * *", missed="run_once"), "2024-01-01T00:00:00.500", "2024-01-01T00:00:10.500",
         ["00:00:09", "00:00:10"]),
        # run_once: exactly one catch-up run, also when an on-time occurrence fires in the same check
        (sched(cron="0 * * * * *", missed="run_once"), "2024-01-01T00:00:30", "2024-01-01T00:10:00.200",
         ["00:09:00", "00:10:00"]),
        (sched(cron="0 * * * * *", missed="skip"), "2024-01-01T00:00:30", "2024-01-01T00:10:00.200", ["00:10:00"]),
        (sched(every=10, missed="run_once"), "2024-01-01T00:00:00.500", "2024-01-01T00:01:40.500",
         ["00:01:30", "00:01:40"]),
        (sched(every=10, missed="skip"), "2024-01-01T00:00:00.500", "2024-01-01T00:01:40.500", ["00:01:40"]),
    ],
)
def test_due_occurrences(schedule, last, now, expected):
    got = [datetime.fromtimestamp(t, ZoneInfo("UTC")).time().isoformat() for t in due(schedule, ts(last), ts(now))]
    assert got == expected


@pytest.mark.parametrize(
    ("schedule", "catch_up"),
    [
        (sched(cron="* * * * * *", missed="run_once"), ["2024-06-01T11:59:59"]),
        (sched(cron="* * * * *", missed="run_once"), ["2024-06-01T11:59:00"]),
        (sched(every=1, missed="run_once"), ["2024-06-01T11:59:59"]),
        (sched(cron="* * * * * *", missed="skip"), []),
    ],
    ids=["per-second", "cron-5", "every", "skip"],
)
def test_catch_up_cost_does_not_grow_with_the_outage(schedule, catch_up):
    now = ts("2024-06-01T12:00:00.500")
    for outage in (3600, 7 * 86400, 366 * 86400):  # walking a week of seconds took ~13 s
        started = time.perf_counter()
        got = due(schedule, now - outage, now)
        assert time.perf_counter() - started < 0.5, f"{outage} s outage"
        assert got == [ts(t) for t in [*catch_up, "2024-06-01T12:00:00"]]


def test_an_outage_fires_one_catch_up_run_and_then_every_second(hz, redis_client):
    ScheduleRepository(hz).save(parse({"name": "tick", "job": "tests.noop", "cron": "* * * * * *",
                                       "queue": "sched", "missed": "run_once"}))
    ScheduleRepository(hz).save(parse({"name": "other", "job": "tests.noop", "every": 1, "queue": "sched"}))
    now = 1_800_000_000.2
    ScheduleRepository(hz).advance("tick", now - 7 * 86400)  # a week without a master
    ScheduleRepository(hz).advance("other", now - 1)
    started = time.perf_counter()
    first = fire_due(hz, now, owner="a")
    assert time.perf_counter() - started < 1.0  # the week-old marker does not hold up "other"
    assert sorted((f.schedule, f.fire_time) for f in first) == [
        ("other", 1_800_000_000.0), ("tick", 1_799_999_999.0), ("tick", 1_800_000_000.0)
    ]
    second = fire_due(hz, now + 1, owner="a")
    assert sorted((f.schedule, f.fire_time) for f in second) == [("other", 1_800_000_001.0), ("tick", 1_800_000_001.0)]


def test_a_check_cut_by_max_runs_leaves_the_rest_for_the_next_check(hz, redis_client, monkeypatch):
    # with every >= 1 s no check reaches MAX_RUNS (10); lower it to see what happens when one does
    monkeypatch.setattr(schedules, "MAX_RUNS", 2)
    ScheduleRepository(hz).save(parse({"name": "each", "job": "tests.noop", "every": 1, "queue": "sched"}))
    now = 1_800_000_000.5
    ScheduleRepository(hz).advance("each", now - 4)  # 1_799_999_997 .. 1_800_000_000 are due
    first = [f.fire_time for f in fire_due(hz, now, owner="a")]
    assert first == [1_799_999_997.0, 1_799_999_998.0]
    assert ScheduleRepository(hz).markers(["each"]) == [1_799_999_998.0]
    second = [f.fire_time for f in fire_due(hz, now + 1, owner="a")]
    assert second == [1_799_999_999.0, 1_800_000_000.0]
    third = [f.fire_time for f in fire_due(hz, now + 1.5, owner="a")]
    assert third == [1_800_000_001.0, 1_800_000_002.0]
    assert _fired(redis_client, hz) == [1_799_999_997.0 + i for i in range(6)]


def test_cron_is_evaluated_in_the_schedule_timezone():
    paris = sched(cron="0 0 3 * * *", timezone="Europe/Paris")
    got = due(paris, ts("2024-07-01T02:59:58", "Europe/Paris"), ts("2024-07-01T03:00:01", "Europe/Paris"))
    assert got == [ts("2024-07-01T03:00:00", "Europe/Paris")]
    assert got == [ts("2024-07-01T01:00:00")]  # 01:00 UTC in summer


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(text: str, fold: int = 0) -> float:
    """A Berlin wall-clock time; ``fold=1`` is the second 02:xx of 2027-10-31 (CET, after DST ends)."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN, fold=fold).timestamp()


def berlin_times(times: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, BERLIN).isoformat() for t in times]


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # a fixed hour fires once on the repeated wall-clock time: the first instance (CEST)
        ("30 2 * * *", ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]),
        ("0 30 2 * * *", ["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"]),
        ("30 1-3 * * *", ["2027-10-31T01:30:00+02:00", "2027-10-31T02:30:00+02:00", "2027-10-31T03:30:00+01:00"]),
        # an hour field starting with '*' fires at both instances
        ("0 * * * *", ["2027-10-31T01:00:00+02:00", "2027-10-31T02:00:00+02:00", "2027-10-31T02:00:00+01:00",
                       "2027-10-31T03:00:00+01:00"]),
        ("30 */2 * * *", ["2027-10-31T02:30:00+02:00", "2027-10-31T02:30:00+01:00", "2027-10-31T04:30:00+01:00"]),
    ],
)
def test_dst_fall_back_fires_a_fixed_hour_once(cron, expected):
    schedule = sched(cron=cron, timezone="Europe/Berlin")
    got = occurrences(schedule, berlin("2027-10-31T00:59:00"))
    assert berlin_times([next(got) for _ in expected]) == expected


def test_dst_fall_back_checks_around_the_repeated_hour():
    nightly = sched(cron="30 2 * * *", timezone="Europe/Berlin", missed="run_once")
    first, second = berlin("2027-10-31T02:30:00"), berlin("2027-10-31T02:30:00", fold=1)
    assert second - first == 3600
    # masters checking each second through both passes of 02:30 fire it once
    assert due(nightly, first - 0.5, first + 0.5) == [first]
    assert due(nightly, second - 0.5, second + 0.5) == []
    assert [t for t in (first, second) if due(nightly, t - 3, t + 1)] == [first]
    # the next run after the first pass is the next day's, not the second pass
    assert berlin_times([next(occurrences(nightly, first))]) == ["2027-11-01T02:30:00+01:00"]
    assert berlin_times([next(occurrences(nightly, berlin("2027-10-31T02:10:00", fold=1)))]) == [
        "2027-11-01T02:30:00+01:00"
    ]
    # an outage across both passes: the catch-up run is the first pass's occurrence
    assert due(nightly, berlin("2027-10-30T12:00:00"), berlin("2027-10-31T02:45:00", fold=1)) == [first]
    hourly = sched(cron="0 * * * *", timezone="Europe/Berlin")
    for t in (berlin("2027-10-31T02:00:00"), berlin("2027-10-31T02:00:00", fold=1)):
        assert due(hourly, t - 0.5, t + 0.5) == [t]


def test_invalid_schedules_name_the_field():
    with pytest.raises(ScheduleError, match="cron"):
        parse({"name": "x", "job": "tests.noop", "cron": "61 * * * * *"})
    with pytest.raises(ScheduleError, match="exactly one of 'cron' or 'every'"):
        parse({"name": "x", "job": "tests.noop"})
    with pytest.raises(ScheduleError, match="missed"):
        parse({"name": "x", "job": "tests.noop", "every": 5, "missed": "sometimes"})
    with pytest.raises(ScheduleError, match="timezone"):
        parse({"name": "x", "job": "tests.noop", "every": 5, "timezone": "Mars/Olympus"})
    with pytest.raises(ScheduleError, match="^name: expected a schedule name .*lone surrogate"):
        parse({"name": "x\ud800", "job": "tests.noop", "every": 5})  # the API's JSON parser refuses it already


def test_one_occurrence_is_dispatched_once_by_concurrent_callers(hz, redis_client):
    ScheduleRepository(hz).save(parse({"name": "api-1", "job": "tests.noop", "every": 1, "queue": "sched"}))
    now = 1_800_000_000.2
    ScheduleRepository(hz).advance("api-1", now - 3)
    first = fire_due(hz, now, owner="a")
    second = fire_due(hz, now, owner="b")
    assert [f.fire_time for f in first] == [1_799_999_998.0, 1_799_999_999.0, 1_800_000_000.0]
    assert second == []
    assert redis_client.llen(hz.keys.queue("sched")) == 3
    job = redis_client.hgetall(hz.keys.job(first[0].job_id))
    assert job["name"] == "tests.noop" and job["schedule"] == "api-1"
    assert json.loads(job["tags"]) == ["schedule:api-1"]


def _fired(redis_client, hz) -> list[float]:
    ids = redis_client.lrange(hz.keys.queue("sched"), 0, -1)
    return sorted(float(redis_client.hget(hz.keys.job(i), "scheduled_for")) for i in ids)


@pytest.fixture
def per_second(config_data):
    config_data["schedule"] = [{"name": "tick", "job": "tests.noop", "cron": "* * * * * *", "queue": "sched"}]
    config_data["defaults"]["supervisor-1"].update(min_processes=1, max_processes=1)
    return config_data


@pytest.mark.slow
def test_per_second_schedule_fires_once_per_second_with_two_masters(per_second, hz, procs, redis_client):
    procs.horizon("start")
    procs.horizon("start")
    wait_for(lambda: len(redis_client.zrange(hz.keys.masters(), 0, -1)) == 2, timeout=30)
    wait_for(lambda: len(_fired(redis_client, hz)) >= 5, timeout=30)
    start = _fired(redis_client, hz)[-1]
    wait_for(lambda: len([t for t in _fired(redis_client, hz) if t > start]) >= 4, timeout=30)
    fired = _fired(redis_client, hz)
    assert len(fired) == len(set(fired)), "an occurrence was dispatched twice"
    window = [t for t in fired if t >= start]
    assert [b - a for a, b in zip(window, window[1:], strict=False)] == [1.0] * (len(window) - 1), window


def test_schedule_list_and_run_commands(per_second, hz, procs, redis_client):
    ScheduleRepository(hz).save(parse({"name": "api-every", "job": "tests.noop", "every": 30}))
    out = procs.run("schedule", "list")
    assert out.returncode == 0, out.stderr
    assert "tick" in out.stdout and "api-every" in out.stdout and "every 30s" in out.stdout
    rows = json.loads(procs.run("schedule", "list", "--json").stdout)
    assert {r["name"]: r["source"] for r in rows} == {"tick": "config", "api-every": "api"}
    # two stand-alone firing loops also dispatch each second once
    procs.horizon("schedule", "run")
    procs.horizon("schedule", "run")
    wait_for(lambda: len(_fired(redis_client, hz)) >= 4, timeout=30)
    fired = _fired(redis_client, hz)
    assert len(fired) == len(set(fired))


def test_schedule_list_text_survives_stored_schedules_an_older_version_accepted(per_second, hz, procs, redis_client):
    for name, every in (("tiny", 1e-300), ("far", 1e12)):
        redis_client.hset(hz.keys.schedules(), name, json.dumps({"name": name, "job": "tests.noop", "every": every}))
    ScheduleRepository(hz).save(parse({"name": "yearly", "job": "tests.noop", "every": 31_622_400}))
    out = procs.run("schedule", "list")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["tick", "yearly"]
    assert "every 3.16224e+07s" in out.stdout and " UTC" in out.stdout


def test_a_huge_every_in_the_config_is_a_one_line_usage_error(config_data, procs):
    config_data["schedule"] = [{"name": "s", "job": "tests.noop", "every": 10**400}]
    procs.config.write_text(yaml.safe_dump(config_data))
    out = procs.run("schedule", "list")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"horizon: {procs.config}: schedule[0].every: expected a number of seconds from 1 to")
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "4.5", "6", "60"])
def test_schedule_run_refuses_an_interval_that_would_lose_occurrences(per_second, procs, interval):
    out = procs.run("schedule", "run", "--interval", interval, timeout=20)  # 6 and 60 used to run, dropping runs
    assert out.returncode == 2, out.stderr
    assert "Invalid value for '--interval'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_schedule_run_with_the_longest_interval_fires_every_occurrence(per_second, hz, procs, redis_client):
    procs.horizon("schedule", "run", "--interval", str(schedules.MAX_CHECK_INTERVAL))
    wait_for(lambda: len(_fired(redis_client, hz)) >= 12, timeout=40)  # three checks or more
    fired = _fired(redis_client, hz)
    assert fired == [fired[0] + i for i in range(len(fired))], fired


# --- how each run is tried: a schedule's tries, timeout and backoff ----------------------------------
@job(name="tests.sched_opts", tries=2, timeout=20, backoff=[3])
def _job_with_options() -> None:
    """A job whose decorator sets every run option, for schedules to override."""


def _run_options(redis_client, hz, job_id: str) -> tuple[int, float, list[float]]:
    record = redis_client.hgetall(hz.keys.job(job_id))
    return int(record["tries"]), float(record["timeout"]), json.loads(record["backoff"])


def _fire_each(hz, names: list[str]) -> dict[str, str]:
    """Fire one occurrence of each ``every: 1`` schedule in ``names``: schedule name -> its run's job id."""
    now = 1_800_000_000.2
    for name in names:
        ScheduleRepository(hz).advance(name, now - 1)
    return {f.schedule: f.job_id for f in fire_due(hz, now, owner="a")}


@pytest.fixture
def optioned(config_data):
    every = {"every": 1, "queue": "sched"}
    config_data["schedule"] = [
        {"name": "all", "job": "tests.sched_opts", "tries": 5, "timeout": 600, "backoff": [10, 60], **every},
        {"name": "some", "job": "tests.sched_opts", "tries": 4, **every},
        {"name": "none", "job": "tests.sched_opts", **every},
        {"name": "elsewhere", "job": "other.app.job", "timeout": 7.5, "backoff": 2, **every},  # not registered here
    ]
    config_data["defaults"]["supervisor-1"].update(queue=["default", "sched"], tries=9, timeout=45, backoff=[1])
    return config_data


def test_a_schedules_tries_timeout_and_backoff_reach_each_run(optioned, hz, redis_client):
    fired = _fire_each(hz, ["all", "some", "none", "elsewhere"])
    assert _run_options(redis_client, hz, fired["all"]) == (5, 600.0, [10.0, 60.0])  # over the job's own
    assert _run_options(redis_client, hz, fired["some"]) == (4, 20.0, [3.0])  # the rest: the job's own
    assert _run_options(redis_client, hz, fired["none"]) == (2, 20.0, [3.0])  # as before
    assert _run_options(redis_client, hz, fired["elsewhere"]) == (9, 7.5, [2.0])  # over the queue's defaults


def test_stored_schedules_keep_their_run_options_and_old_records_still_fire(hz, redis_client):
    repo = ScheduleRepository(hz)
    repo.save(parse({"name": "api", "job": "tests.sched_opts", "every": 1, "queue": "sched", "tries": 3,
                     "timeout": 90, "backoff": 5}))
    repo.save(parse({"name": "plain", "job": "tests.sched_opts", "every": 1, "queue": "sched"}))
    # written before schedules had run options
    redis_client.hset(hz.keys.schedules(), "old", json.dumps({"name": "old", "job": "tests.sched_opts", "every": 1,
                                                              "queue": "sched", "timezone": "UTC"}))
    stored = {name: json.loads(text) for name, text in redis_client.hgetall(hz.keys.schedules()).items()}
    assert (stored["api"]["tries"], stored["api"]["timeout"], stored["api"]["backoff"]) == (3, 90.0, [5.0])
    assert not {"tries", "timeout", "backoff"} & set(stored["plain"])  # readable by a version without them
    fired = _fire_each(hz, ["api", "plain", "old"])
    assert _run_options(redis_client, hz, fired["api"]) == (3, 90.0, [5.0])
    assert _run_options(redis_client, hz, fired["plain"]) == (2, 20.0, [3.0])
    assert _run_options(redis_client, hz, fired["old"]) == (2, 20.0, [3.0])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tries", 0, "tries: tries must be an integer from 1 to 1000, got 0"),
        ("timeout", -1, "timeout: timeout must be from 0.001 to 86400 seconds, got -1"),
        ("backoff", [1, "x"], "backoff: backoff must be a number of seconds, got 'x'"),
    ],
)
def test_invalid_run_options_name_the_field(field, value, message):
    with pytest.raises(ScheduleError) as info:
        parse({"name": "x", "job": "tests.noop", "every": 5, field: value})
    assert str(info.value) == message


def test_schedule_list_shows_run_options(optioned, hz, procs):
    text = procs.run("schedule", "list")
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines()}
    assert lines["all"].endswith(" tries 5 timeout 600s backoff 10,60s")
    assert lines["some"].endswith(" tries 4") and "timeout" not in lines["some"]
    assert "tries" not in lines["none"] and "backoff" not in lines["none"]
    rows = {r["name"]: r for r in json.loads(procs.run("schedule", "list", "--json").stdout)}
    assert (rows["all"]["tries"], rows["all"]["timeout"], rows["all"]["backoff"]) == (5, 600.0, [10.0, 60.0])
    assert (rows["none"]["tries"], rows["none"]["timeout"], rows["none"]["backoff"]) == (None, None, None)


def test_an_invalid_run_option_in_the_config_is_a_one_line_usage_error(config_data, procs):
    config_data["schedule"] = [{"name": "s", "job": "tests.noop", "every": 5, "timeout": 0}]
    procs.config.write_text(yaml.safe_dump(config_data))
    out = procs.run("schedule", "list")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (f"horizon: {procs.config}: schedule[0].timeout: timeout must be from 0.001 to "
                                  "86400 seconds, got 0")
