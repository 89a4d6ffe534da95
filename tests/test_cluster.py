"""horizon on a real 3-master Redis Cluster, with ``redis.url`` naming a node that does NOT serve
the prefix's slot: every client (dispatch, workers, master and supervisors, the web API, the
scripts' own connections, blocking waits) opens on the slot's owner (horizon.cluster), and a
slot migrated to another node while a worker waits is followed without restarting the worker.

The jobs record what they did on the session's plain redis-server (HORIZON_TEST_REDIS), not on
the cluster, so their own writes need no routing.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from horizon.embedded import EmbeddedRedis, EmbeddedRedisError, port_in_use
from tests import sample_jobs
from tests.api_fixtures import app, client, get  # noqa: F401  (fixtures)
from tests.helpers import wait_for

SLOTS = 16384
ADDSLOTS_CHUNK = 1000  # Redis 6.2 has no ADDSLOTSRANGE: slots are added this many per command
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000
PORT_TRIES = 3
FAST = {"HORIZON_HEARTBEAT_INTERVAL": "0.2", "HORIZON_LOOP_INTERVAL": "0.1", "HORIZON_MAINTAIN_INTERVAL": "0.5"}


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too (so at most 55535)."""
    for _ in range(100):
        port = random.randint(20000, 55535)
        if not port_in_use(port) and not port_in_use(port + BUS_OFFSET):
            return port
    raise AssertionError("no free port pair for a cluster node")


@dataclass
class Node:
    server: EmbeddedRedis
    client: redis.Redis
    id: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url


class Cluster:
    """Three masters on free loopback ports, each serving a third of the slots."""

    def __init__(self, root: Path) -> None:
        self.nodes: list[Node] = []
        for i in range(3):
            self.nodes.append(self._node(root / f"node{i}"))

    @staticmethod
    def _node(folder: Path) -> Node:
        """A cluster-enabled server on a free port that has its cluster bus port (+10000) free too."""
        for attempt in range(PORT_TRIES):
            server = EmbeddedRedis(str(folder), cluster_port(), appendonly=False, extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            ))  # fmt: skip
            try:
                server.start()
                break
            except EmbeddedRedisError:  # another process took the port meanwhile
                server.stop()
                if attempt == PORT_TRIES - 1:
                    raise
        admin = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True, retry=Retry(NoBackoff(), 0))
        return Node(server, admin, admin.execute_command("CLUSTER", "MYID"))

    def form(self, timeout: float = 20.0) -> None:
        per = SLOTS // len(self.nodes) + 1
        for i, node in enumerate(self.nodes):
            slots = list(range(i * per, min((i + 1) * per, SLOTS)))
            for start in range(0, len(slots), ADDSLOTS_CHUNK):
                node.client.execute_command("CLUSTER", "ADDSLOTS", *slots[start : start + ADDSLOTS_CHUNK])
        for node in self.nodes[1:]:
            self.nodes[0].client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        wait_for(self.healthy, timeout=timeout, interval=0.05, message="the cluster never reached cluster_state:ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            info = node.client.execute_command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_known_nodes:3" not in info:
                return False
            if len(node.client.execute_command("CLUSTER", "SLOTS")) != len(self.nodes):
                return False
        return True

    def owner(self, slot: int) -> Node:
        """The node serving ``slot``, as the first node sees it."""
        for start, end, master, *_ in self.nodes[0].client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no node serves slot {slot}")

    def migrate(self, slot: int, source: Node, target: Node) -> int:
        """Move ``slot`` with its keys from ``source`` to ``target`` the way redis-cli --cluster
        reshard does; returns how many keys moved."""
        target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        moved = 0
        while keys := source.client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for node in [target, source, *(n for n in self.nodes if n not in (source, target))]:
            node.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.id)
        return moved

    def stop(self) -> None:
        for node in self.nodes:
            node.client.close()
            node.server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    built = None
    try:
        built = Cluster(tmp_path_factory.mktemp("cluster"))
        built.form()
        yield built
    finally:
        if built is not None:
            built.stop()


@pytest.fixture
def prefix() -> str:
    return "c" + uuid.uuid4().hex[:10]


@pytest.fixture
def slot(prefix: str) -> int:
    return key_slot(("{" + prefix + "}").encode())


@pytest.fixture
def owner(cluster: Cluster, slot: int) -> Node:
    return cluster.owner(slot)


@pytest.fixture
def entry(cluster: Cluster, owner: Node) -> Node:
    """The node redis.url names: one that does not serve the prefix's slot."""
    return next(n for n in cluster.nodes if n is not owner)


@pytest.fixture
def config_data(entry: Node, prefix: str) -> dict:
    return {
        "prefix": prefix,
        "redis": {"url": entry.url},
        "imports": ["tests.sample_jobs"],
        "defaults": {"supervisor-1": {"queue": ["default"], "max_processes": 1, "timeout": 30}},
    }


def horizon_keys(node: Node, prefix: str) -> list[str]:
    return list(node.client.scan_iter(match=f"{{{prefix}}}:*", count=1000))


@pytest.mark.slow
def test_jobs_dispatched_and_worked_through_a_node_that_does_not_serve_the_prefix(
    hz, procs, redis_client, cluster, owner, entry, prefix
):
    """Dispatch (one and many) from this process, then `horizon work`: the jobs complete or fail
    as on a single Redis, with their metrics, and every key is on the slot's owner. Before, the
    first dispatch died with MOVED (a ResponseError) from the node redis.url names."""
    ok = [sample_jobs.add.dispatch("cl-sum", i, 1) for i in range(3)]
    ok += sample_jobs.add.dispatch_many([(("cl-sum", 10, 1), {}), (("cl-sum", 20, 1), {})])
    bad = sample_jobs.fail.options(tries=1).dispatch("cl-fail")

    result = procs.run("work", "--stop-when-empty", timeout=30)
    assert result.returncode == 0, result.stderr

    assert sorted(map(int, redis_client.lrange("cl-sum", 0, -1))) == [1, 2, 3, 11, 21]
    assert redis_client.llen("cl-fail") == 1
    for job_id in ok:
        assert hz.redis.hget(hz.keys.job(job_id), "status") == "completed"
    assert hz.redis.hget(hz.keys.job(bad), "status") == "failed"
    assert owner.client.hget(hz.keys.job(bad), "status") == "failed"  # on the owner itself
    assert horizon_keys(entry, prefix) == [] and horizon_keys(owner, prefix)

    assert hz.redis.hget(hz.keys.job_metrics("tests.add"), "throughput") == "5"
    assert hz.redis.zcard(hz.keys.index("completed")) == 5
    assert hz.redis.zcard(hz.keys.index("failed")) == 1
    check = procs.run("start", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_api_and_a_supervised_master_through_a_node_that_does_not_serve_the_prefix(
    hz, client, procs, proc_env, tmp_path, owner  # noqa: F811
):
    """`horizon start` (master, supervisor, worker, their control clients) and the web API both
    go to the slot's owner: the API sees the master's processes, a job's detail and the stats.
    The master's start-up check of the Redis it uses still runs (this cluster keeps no data on
    disk, so it warns)."""
    proc_env.update(FAST)
    procs.env = proc_env
    with (tmp_path / "master.log").open("w") as log:
        procs.horizon("start", stderr=log)
    wait_for(lambda: get(client, "/stats")["processes"] >= 1, timeout=20, message="no worker in the stats")
    job_id = sample_jobs.add.dispatch("cl-api", 2, 3)
    wait_for(lambda: get(client, f"/jobs/{job_id}")["status"] == "completed", timeout=20)

    detail = get(client, f"/jobs/{job_id}")
    assert detail["name"] == "tests.add" and detail["payload"]["args"] == ["cl-api", 2, 3]
    stats = get(client, "/stats")
    assert stats["status"] == "running" and stats["recentJobs"] >= 1 and stats["failedJobs"] == 0
    assert [m["status"] for m in get(client, "/masters").values()] == ["running"]
    assert owner.client.exists(hz.keys.job(job_id))
    assert "neither AOF nor RDB" in (tmp_path / "master.log").read_text()


@pytest.mark.slow
def test_a_slot_migrated_while_the_worker_waits_is_followed_by_the_same_worker(
    hz, procs, redis_client, cluster, owner, entry, slot, prefix
):
    """The prefix's slot moves to another node (IMPORTING/MIGRATING, MIGRATE ... KEYS, SETSLOT
    NODE everywhere) while a worker is blocked waiting for jobs, then back: each time its wait is
    answered MOVED, it reconnects to the new owner, and the jobs dispatched after the move (one
    by dispatch, then two by dispatch_many) run once each, in the same worker. The dispatching
    process follows the MOVED too, without an error."""
    worker = procs.horizon("work")
    first = sample_jobs.record.dispatch("cl-moved", "before")
    wait_for(lambda: hz.redis.hget(hz.keys.job(first), "status") == "completed", timeout=15)
    (before,) = redis_client.lrange("cl-moved", 0, -1)
    pid = before.split(":")[1]
    target = next(n for n in cluster.nodes if n is not owner and n is not entry)

    wait_until_blocked(owner)
    assert cluster.migrate(slot, owner, target) > 0
    assert horizon_keys(owner, prefix) == [] and horizon_keys(target, prefix)
    second = sample_jobs.record.dispatch("cl-moved", "after")
    wait_for(lambda: redis_client.llen("cl-moved") == 2, timeout=15, message="the job after the move never ran")
    # the body's RPUSH comes before the acknowledgement: wait for that too (as for the jobs below)
    wait_for(lambda: target.client.hget(hz.keys.job(second), "status") == "completed", timeout=15)

    wait_until_blocked(target)
    assert cluster.migrate(slot, target, owner) > 0
    more = sample_jobs.record.dispatch_many([(("cl-moved", "back"), {})] * 2)
    wait_for(lambda: redis_client.llen("cl-moved") == 4, timeout=15, message="the jobs after the move back never ran")
    for job_id in more:
        wait_for(lambda j=job_id: owner.client.hget(hz.keys.job(j), "status") == "completed", timeout=15)

    assert redis_client.lrange("cl-moved", 0, -1) == [before, f"after:{pid}", f"back:{pid}", f"back:{pid}"]
    assert worker.poll() is None and str(worker.pid) == pid
    assert horizon_keys(target, prefix) == [] and hz.redis.llen(hz.keys.queue("default")) == 0


def test_after_a_moved_the_other_connections_open_on_the_new_owner_before_sending(hz, cluster, owner, entry, slot):
    """One MOVED re-routes the whole process: the connection that read it raises SlotMoved (the
    command did not run), and the process's other connections, still open on the old owner,
    open again on the new one before their next command instead of each being answered MOVED."""
    from horizon.cluster import SlotMoved

    def moved_replies() -> int:
        return int(owner.client.info("errorstats").get("errorstat_MOVED", {}).get("count", 0))

    connections = [hz.scripts.new_connection() for _ in range(3)]
    for connection in connections:
        connection.connect()
    assert {c.port for c in connections} == {owner.port}
    target = next(n for n in cluster.nodes if n is not owner and n is not entry)
    cluster.migrate(slot, owner, target)
    before = moved_replies()

    connections[0].send_command("INCR", hz.keys.clock())
    with pytest.raises(SlotMoved):
        connections[0].read_response()
    for connection in connections:
        connection.send_command("INCR", hz.keys.clock())
        assert connection.read_response() >= 1
    assert moved_replies() - before == 1
    assert {c.port for c in connections} == {target.port}
    for connection in connections:
        connection.disconnect()


def wait_until_blocked(node: Node) -> None:
    """Until a client (the worker) is blocked in BRPOP on ``node``."""
    wait_for(lambda: any(c["cmd"] == "brpop" and "b" in c["flags"] for c in node.client.client_list()),
             timeout=10, message="no worker blocked in BRPOP")


def test_a_plain_redis_is_asked_once_per_process(redis_server, prefix):
    """On a plain Redis the cluster question (CLUSTER SLOTS) is asked by the first socket of a
    process only: later clients, script connections and commands go straight to it, with
    redis-py's own reply reading (no redirect handling on the hot path)."""
    from horizon.config import settings_from_dict
    from horizon.connection import connect
    from horizon.scripts import Scripts

    def cluster_calls() -> int:
        return int(admin.info("commandstats").get("cmdstat_cluster", {}).get("calls", 0))

    settings = settings_from_dict({"prefix": prefix, "redis": {"url": redis_server.url}})
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    clients = [connect(settings) for _ in range(3)]
    try:
        calls = cluster_calls()
        for c in clients:
            assert c.ping()
        script = Scripts(clients[0], settings).new_connection()
        script.connect()
        assert "read_response" not in vars(script) and "send_packed_command" not in vars(script)
        script.disconnect()
        assert cluster_calls() - calls == 1

        from horizon.cluster import prefix_slot, route_of

        route = route_of("127.0.0.1", redis_server.port, prefix_slot(prefix))
        assert route is not None and not route.cluster and route.port == redis_server.port
    finally:
        for c in clients:
            c.close()
        admin.close()
