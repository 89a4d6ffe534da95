"""Shared fixtures: one embedded redis-server per session, a key prefix and a client per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from horizon.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def redis_client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


# --- horizon fixtures ---------------------------------------------------------------------------
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HORIZON = [sys.executable, "-m", "horizon.cli"]


@pytest.fixture
def config_data(redis_url: str, prefix: str) -> dict:
    """A config for this test's Redis and prefix; tests may change it before `config_file`."""
    return {
        "prefix": prefix,
        "redis": {"url": redis_url},
        "imports": ["tests.sample_jobs"],
        "defaults": {"supervisor-1": {"queue": ["default"], "max_processes": 2, "timeout": 30}},
    }


@pytest.fixture
def config_file(tmp_path: Path, config_data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_data))
    return path


@pytest.fixture
def proc_env(redis_url: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HORIZON_TEST_REDIS"] = redis_url
    env.pop("HORIZON_CONFIG", None)
    env.pop("HORIZON_REDIS_URL", None)
    return env


@pytest.fixture
def hz(config_data: dict, redis_client, proc_env: dict, monkeypatch: pytest.MonkeyPatch):
    """horizon configured in this test process for the test's Redis and prefix."""
    from horizon.config import settings_from_dict
    from horizon.context import configure, reset

    monkeypatch.setenv("HORIZON_TEST_REDIS", proc_env["HORIZON_TEST_REDIS"])
    import tests.sample_jobs  # noqa: F401  (registers the jobs)

    instance = configure(settings_from_dict(config_data, base_dir=str(ROOT)))
    yield instance
    instance.close()
    reset()


class Processes:
    """Real child processes started by a test; all are killed at the end."""

    def __init__(self, env: dict, config: Path) -> None:
        self.env, self.config, self.procs = env, config, []

    def horizon(self, *args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(
            [*HORIZON, *args, "--config", str(self.config)],
            env=self.env,
            cwd=str(ROOT),
            start_new_session=True,
            **kwargs,
        )
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*HORIZON, *args, "--config", str(self.config)],
            env=self.env,
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def procs(proc_env: dict, config_file: Path):
    p = Processes(proc_env, config_file)
    yield p
    p.cleanup()
