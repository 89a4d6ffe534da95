"""`horizon web`: gunicorn serving the API for real, driven with curl; the bind refusal."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest

from tests import sample_jobs
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(*args: str) -> tuple[int, dict | None]:
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=10)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), (json.loads(body) if body.strip() else None)


def test_non_loopback_bind_without_token_is_refused(procs):
    result = procs.run("web", "--bind", "0.0.0.0:0")
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0:0" in result.stderr and "web.auth.token" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_gunicorn_serves_the_api_and_retry_by_curl(hz, procs):
    base = f"http://127.0.0.1:{free_port()}/horizon/api"
    procs.horizon("web", "--bind", base.split("/")[2], "--workers", "1")
    wait_for(lambda: curl(f"{base}/stats")[0] == 200, timeout=20, interval=0.1)
    job_id = sample_jobs.fail.dispatch(f"{hz.settings.prefix}-curl")
    assert procs.run("work", "--stop-when-empty").returncode == 0
    hz.redis.delete(f"{hz.settings.prefix}-curl")

    status, page = curl(f"{base}/jobs/failed")
    assert status == 200 and [j["id"] for j in page["jobs"]] == [job_id]
    status, copy = curl("-X", "POST", f"{base}/jobs/retry/{job_id}")
    assert status == 201 and copy["retry_of"] == job_id and copy["status"] == "pending"
    status, error = curl(f"{base}/nope")
    assert status == 404 and error["error"]["code"] == "NOT_FOUND"
    status, spec = curl(f"{base}/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
