"""RPC handlers in-process against the real Redis: read-only mode refuses every mutating jq call."""

from __future__ import annotations

import pytest

from web.rpc import jq_jobs, jq_queues
from web.rpc.endpoint import DISPATCHER
from web.rpc.session import Connection


@pytest.fixture
def config_data(config_data: dict) -> dict:
    config_data["web"] = {"read_only": True}
    return config_data


def test_read_only_refuses_mutations_and_allows_reads(hz) -> None:
    conn = Connection(hz)
    DISPATCHER.call({"id": 1, "method": "session.create", "params": {}}, conn)
    assert conn.sid is not None
    for method, params in (
        ("jq.add_queue", {"name": "q"}),
        ("jq.update_queue", {"queue": 0}),
        ("jq.delete_queue", {"queue": "q"}),
        ("jq.suspend_queue", {}),
        ("jq.activate_queue", {}),
        ("jq.add_job", {"type": "job", "job": "tests.noop"}),
        ("jq.update_job", {"id": "x"}),
        ("jq.delete_job", {"id": "x"}),
    ):
        reply = DISPATCHER.call({"id": 2, "method": method, "params": params}, conn)
        assert reply["error"]["code"] == -32604, (method, reply)
    assert DISPATCHER.call({"id": 3, "method": "jq.get_queues"}, conn)["result"][0]["name"] == "__default__"
    assert jq_queues.has_queue(conn, queue=0) is True
    assert jq_jobs.get_jobs(conn) == []
