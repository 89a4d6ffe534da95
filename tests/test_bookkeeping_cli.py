"""Bookkeeping through real processes and exports: the `horizon snapshot|forget|clear` verbs,
a real worker's retry bookkeeping, and the Prometheus exposition read back with its parser."""

from __future__ import annotations

import json
import subprocess

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from horizon.prometheus import render
from horizon.repositories.jobs import JobRepository
from horizon.repositories.metrics import MetricsRepository
from tests import sample_jobs
from tests.conftest import HORIZON, ROOT
from tests.test_bookkeeping import push, run


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_exposition_of_the_same_figures(hz):
    push(hz, 3, queue="emails", name="mail.send")
    for ms in (4.0, 40.0, 400.0):
        run(hz, 1, queues=("emails",), runtime=ms)
    push(hz, 2, queue="emails", name="mail.send")
    run(hz, 1, queues=("emails",), outcome="failed_final")
    body, content_type = render(hz)
    assert content_type == CONTENT_TYPE_LATEST and content_type.startswith("text/plain")
    got = samples(body)
    q = (("queue", "emails"),)
    assert got[("horizon_queue_length", q)] == 1
    assert got[("horizon_queue_jobs_completed_total", q)] == 3
    assert got[("horizon_queue_jobs_failed_total", q)] == 1
    assert got[("horizon_queue_runtime_seconds_count", q)] == 3
    assert abs(got[("horizon_queue_runtime_seconds_sum", q)] - 0.444) < 1e-9
    assert got[("horizon_queue_runtime_seconds_bucket", (("le", "0.005"), ("queue", "emails")))] == 1
    assert got[("horizon_queue_runtime_seconds_bucket", (("le", "0.05"), ("queue", "emails")))] == 2
    assert got[("horizon_queue_runtime_seconds_bucket", (("le", "+Inf"), ("queue", "emails")))] == 3
    assert got[("horizon_job_completed_total", (("job", "mail.send"),))] == 3
    assert got[("horizon_recent_jobs", ())] == MetricsRepository(hz).recent_jobs_count() == 5
    assert got[("horizon_recent_failed_jobs", ())] == 1
    assert got[("horizon_jobs_per_minute", ())] > 0
    assert b"horizon_queue_wait_seconds" in body and b"horizon_queue_runtime_estimate_seconds" in body


def test_a_job_and_a_queue_whose_jobs_only_ever_failed_are_exported(hz):
    """The failures of a job that never completed are what an alert needs: its name and queue are
    measured from the first failure on, not only from a first completion."""
    push(hz, 2, queue="doomed", name="always.fails")
    run(hz, 2, queues=("doomed",), outcome="failed_final")
    got = samples(render(hz)[0])
    assert got[("horizon_job_failed_total", (("job", "always.fails"),))] == 2
    assert got[("horizon_job_completed_total", (("job", "always.fails"),))] == 0
    assert got[("horizon_queue_jobs_failed_total", (("queue", "doomed"),))] == 2
    metrics = MetricsRepository(hz)
    assert "always.fails" in metrics.measured_jobs() and "doomed" in metrics.measured_queues()


def cli(config_file, proc_env, *args, stdin=""):
    return subprocess.run([*HORIZON, *args, "--config", str(config_file)], env=proc_env, cwd=str(ROOT),
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_snapshot_forget_and_clear_verbs(hz, config_file, proc_env):
    jobs, metrics = JobRepository(hz), MetricsRepository(hz)
    push(hz, 5)
    run(hz, 2)
    failed = run(hz, 3, outcome="failed_final")
    pending = push(hz, 4, queue="bulk")

    result = cli(config_file, proc_env, "snapshot")
    assert result.returncode == 0, result.stderr
    assert [s["throughput"] for s in metrics.job_snapshots("tests.noop")] == [2]

    assert cli(config_file, proc_env, "forget").returncode == 2
    result = cli(config_file, proc_env, "forget", failed[0])
    assert result.returncode == 0, result.stderr
    assert jobs.get(failed[0]) is None
    result = cli(config_file, proc_env, "forget", failed[0])
    assert result.returncode == 1 and f"no job {failed[0]}" in result.stderr
    result = cli(config_file, proc_env, "forget", "--all")
    assert result.returncode == 0 and "forgot 2 failed jobs" in result.stdout
    assert jobs.page("failed") == ([], 0)

    result = cli(config_file, proc_env, "clear", "bulk", stdin="n\n")
    assert result.returncode == 1 and jobs.get(pending[0]) is not None
    result = cli(config_file, proc_env, "clear", "bulk", stdin="y\n")
    assert result.returncode == 0 and "cleared 4 jobs" in result.stdout
    assert jobs.get(pending[0]) is None
    push(hz, 2, queue="bulk")
    result = cli(config_file, proc_env, "clear", "bulk", "--force")
    assert result.returncode == 0 and "cleared 2 jobs" in result.stdout


def test_real_worker_retry_bookkeeping(hz, procs, redis_client):
    jobs = JobRepository(hz)
    key = f"retry-{hz.settings.prefix}"
    original = sample_jobs.fail.dispatch(key)
    assert procs.run("work", "--stop-when-empty").returncode == 0
    result = procs.run("retry", original)
    assert result.returncode == 0, result.stderr
    copy = result.stdout.strip()
    assert jobs.get(original)["retried_by"][0]["status"] == "pending"
    assert procs.run("work", "--stop-when-empty").returncode == 0
    entry = jobs.get(original)["retried_by"][0]
    assert entry["id"] == copy and entry["status"] == "failed"
    assert json.loads(redis_client.hget(hz.keys.job(copy), "exception"))["class"] == "ValueError"
    assert jobs.get(copy)["retry_of"] == original
    redis_client.delete(key)
