"""`horizon web`: gunicorn serving the API for real, driven over HTTP like curl; the bind refusal."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests import sample_jobs
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(*args: str) -> tuple[int, dict | None]:
    """What `curl -s [-X METHOD] URL` does: (status, decoded JSON body), without needing curl installed."""
    method = args[1] if args[0] == "-X" else "GET"
    request = urllib.request.Request(args[-1], method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        return 0, None
    return status, (json.loads(body) if body.strip() else None)


def test_non_loopback_bind_without_token_is_refused(procs):
    result = procs.run("web", "--bind", "0.0.0.0:0")
    assert result.returncode == 2
    assert "refusing to bind 0.0.0.0:0" in result.stderr and "web.auth.token" in result.stderr
    assert "Traceback" not in result.stderr


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


def test_event_streams_cannot_take_every_server_thread(procs):
    """Each event stream holds a gunicorn thread for up to its lifetime (300 s). A process admits
    web.streams.MAX_STREAMS of them and answers one more 503 with Retry-After (the dashboard polls
    meanwhile), so API requests still find a thread. Before, ten dashboard tabs on a 2-worker
    server left `GET stats` waiting for minutes."""
    from web.streams import MAX_STREAMS, RETRY_AFTER, THREADS

    assert MAX_STREAMS < THREADS
    host_port = f"127.0.0.1:{free_port()}"
    base = f"http://{host_port}/horizon/api"
    procs.horizon("web", "--bind", host_port, "--workers", "1")
    wait_for(lambda: curl(f"{base}/stats")[0] == 200, timeout=20, interval=0.1)
    host, port = host_port.split(":")
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /horizon/api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "a stream under the limit was refused"
            streams.append(sock)
        request = urllib.request.Request(f"{base}/events", headers={"Accept": "text/event-stream"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == str(RETRY_AFTER)
        body = json.loads(refused.value.read())
        assert body["error"]["code"] == "UNAVAILABLE" and f"already serves {MAX_STREAMS} event streams" in (
            body["error"]["message"])
        status, stats = curl(f"{base}/stats")  # 10 s at most, as curl -m 10 would
        assert status == 200 and "jobsPerMinute" in stats
    finally:
        for sock in streams:
            sock.close()


def test_a_closed_event_stream_gives_back_its_slot_within_seconds(procs):
    """A dashboard reload closes its event stream. The server used to notice only when a write
    failed, two heartbeats (15 s each) later, so a few quick reloads used up every slot and the
    dashboard fell back to polling. An idle stream now looks at its socket about once a second."""
    from web.api.events import CLIENT_CHECK
    from web.streams import MAX_STREAMS

    host_port = f"127.0.0.1:{free_port()}"
    base = f"http://{host_port}/horizon/api"
    procs.horizon("web", "--bind", host_port, "--workers", "1")
    wait_for(lambda: curl(f"{base}/stats")[0] == 200, timeout=20, interval=0.1)
    host, port = host_port.split(":")

    def open_stream() -> tuple[socket.socket, bytes]:
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"GET /horizon/api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        return sock, sock.recv(4096)

    opened = [open_stream() for _ in range(MAX_STREAMS)]
    assert all(head.startswith(b"HTTP/1.1 200") for _, head in opened)
    closed_at = time.monotonic()
    for sock, _ in opened:
        sock.close()

    def admitted() -> bool:
        sock, head = open_stream()
        sock.close()
        return head.startswith(b"HTTP/1.1 200")

    # the heartbeat (web.SSE_HEARTBEAT, 15 s) is far beyond this deadline
    wait_for(admitted, timeout=4 * CLIENT_CHECK + 2, interval=0.2, message="closed streams kept their slots")
    print(f"slots given back {time.monotonic() - closed_at:.2f} s after the clients closed")
