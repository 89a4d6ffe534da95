"""The ``horizon`` command line: one console script, one verb per operation.

Every verb takes ``--config PATH`` (default ``HORIZON_CONFIG``, else ``./config.yaml``) and
``--env NAME``. Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from horizon.config import ConfigError, Settings, load_config
from horizon.schedules import MAX_CHECK_INTERVAL

EXIT_FAILURE = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"horizon: {message}", err=True)
    sys.exit(code)


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --config/--env and passes loaded Settings as the first argument."""

    @click.option("--config", "config_path", default=None, help="config file (HORIZON_CONFIG, ./config.yaml)")
    @click.option("--env", "env", default=None, help="environment (HORIZON_ENV, production)")
    @wraps(fn)
    def wrapper(config_path: str | None, env: str | None, **kwargs: Any) -> Any:
        try:
            settings = load_config(config_path, env=env)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        return fn(settings, **kwargs)

    return wrapper


def connected(settings: Settings, *, import_jobs: bool = False, wait: bool = False) -> Any:
    """Configure this process (optionally importing the job modules) or exit with a clear error.
    ``wait``: while Redis cannot be reached, wait for it instead (see :func:`wait_for_redis`)."""
    from horizon.bootstrap import ImportJobsError
    from horizon.bootstrap import import_jobs as do_import
    from horizon.connection import NoRedisError
    from horizon.context import configure

    try:
        if import_jobs:
            do_import(settings)
        hz = configure(settings)
        unreachable = _ping(hz)
        if unreachable is not None:
            if not wait:
                raise unreachable
            if not wait_for_redis(hz, unreachable):
                sys.exit(0)  # stopped while waiting
        return hz
    except ImportJobsError as exc:
        fail(str(exc), EXIT_USAGE)
    except NoRedisError as exc:
        fail(str(exc), EXIT_FAILURE)
    except Exception as exc:  # redis connection errors and the like
        fail(f"cannot reach redis: {exc}", EXIT_FAILURE)


def _redis_refusal(settings: Settings) -> str | None:
    """What ``start --check`` says of ``redis.url``: why the master could never use it (a wrong
    password, a missing permission), or None. A Redis that does not answer now is no reason: a
    master waits for it (``wait_for_redis``). With no url, the embedded server must be running
    (its URL file there), as ``horizon start`` needs it: else that is the reason."""
    import redis

    from horizon.config import masked_url
    from horizon.connection import NoRedisError, connect, redis_url

    if settings.redis.url is None:
        try:
            redis_url(settings)
        except NoRedisError as exc:
            return str(exc)
        return None
    # the master's own kind of client: on a cluster, the node serving the prefix is the one asked
    client = connect(settings, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
            return f"redis at {masked_url(settings.redis.url)} refuses the credentials: {exc}"
        click.echo(f"horizon: redis at {masked_url(settings.redis.url)} does not answer now ({type(exc).__name__}); "
                   "a master waits for it")
    except redis.RedisError as exc:  # NOPERM and the like
        return f"redis at {masked_url(settings.redis.url)} refuses: {exc}"
    finally:
        client.close()
    return None


def _ping(hz: Any) -> Exception | None:
    """None when Redis answers; the error when it cannot be reached (worth waiting for). A wrong
    password or missing permission is raised: waiting does not mend it."""
    import redis

    try:
        hz.redis.ping()
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError):
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return exc
    return None


def wait_for_redis(hz: Any, first: Exception) -> bool:
    """Ping until Redis answers, backing off from 0.5 to 5 s: a master started before its Redis
    (at boot, or while it restarts) waits rather than exit, which under systemd would mean a
    restart every few seconds until its start limit makes the unit fail for good. The master's
    signals are held (``hold_signals``): a TERM or INT meanwhile ends the wait (False), others
    are dropped. True once Redis answers."""
    import logging
    import signal

    from supervisor.children import FORWARDED

    log = logging.getLogger("horizon.cli")
    delay, error = 0.5, first
    while True:
        log.warning("redis unreachable at start (%s); waiting for it, next try in %.1f s", error, delay)
        received = signal.sigtimedwait(FORWARDED, delay)
        if received is not None and received.si_signo in (signal.SIGTERM, signal.SIGINT):
            log.info("stopped while waiting for redis")
            return False
        error = _ping(hz)
        if error is None:
            log.warning("redis reachable; starting")
            return True
        delay = min(delay * 2, 5.0)


@click.group()
def main() -> None:
    """horizon: a Redis job queue with a master supervisor, HTTP API and dashboard."""


@main.command()
@common
@click.option(
    "--queue", "queues", default="default", show_default=True, help="queues, priority order, comma-separated"
)
@click.option("--max-jobs", type=int, default=0, help="stop after this many jobs")
@click.option("--max-time", type=float, default=0, help="stop after this many seconds")
@click.option("--memory", type=int, default=0, help="stop when USS exceeds this many MB")
@click.option("--stop-when-empty", is_flag=True, help="stop when no job is pending or due")
@click.option("--name", default=None, help="worker name in logs")
@click.option("--prefetch", type=click.IntRange(1, 64), default=1, show_default=True,
              help="jobs reserved per round trip from a queue of short jobs")
def work(
    settings: Settings,
    queues: str,
    max_jobs: int,
    max_time: float,
    memory: int,
    stop_when_empty: bool,
    name: str | None,
    prefetch: int,
) -> None:
    """Run one worker in the foreground (for debugging)."""
    import os

    from horizon.keys import QueueNameError, check_queue_name
    from horizon.logs import setup_logging
    from horizon.worker import Worker, WorkerOptions

    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        fail("--queue names no queue", EXIT_USAGE)
    try:
        names = [check_queue_name(q) for q in names]
    except QueueNameError as exc:
        fail(f"--queue: {exc}", EXIT_USAGE)
    setup_logging(name or f"worker-{os.getpid()}")
    hz = connected(settings, import_jobs=True)
    options = WorkerOptions(
        queues=names,
        max_jobs=max_jobs,
        max_time=max_time,
        memory=memory,
        prefetch=prefetch,
        stop_when_empty=stop_when_empty,
        name=name or f"worker-{os.getpid()}",
    )
    worker = Worker(hz, options)
    worker.install_signals()
    sys.exit(worker.run())


@main.command()
@common
@click.argument("name")
@click.option("--json", "body", default="{}", help='{"args": [...], "kwargs": {...}}')
@click.option("--queue", default=None)
@click.option("--delay", type=float, default=None, help="seconds before the job may run")
@click.option("--tries", type=int, default=None)
@click.option("--timeout", type=float, default=None)
@click.option("--tag", "tags", multiple=True)
def dispatch(
    settings: Settings,
    name: str,
    body: str,
    queue: str | None,
    delay: float | None,
    tries: int | None,
    timeout: float | None,
    tags: tuple[str, ...],
) -> None:
    """Dispatch job NAME with JSON arguments; prints the job id."""
    from horizon import jobs

    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        fail(f"--json is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(data, dict) or set(data) - {"args", "kwargs"}:
        fail('--json must be an object with only "args" (list) and "kwargs" (object)', EXIT_USAGE)
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        fail('--json "args" must be a list and "kwargs" an object', EXIT_USAGE)
    hz = connected(settings, import_jobs=True)
    try:
        definition = jobs.lookup(name)
    except jobs.UnknownJob as exc:
        fail(str(exc), EXIT_USAGE)
    from horizon.payload import PayloadError

    try:
        bound = definition.options(queue=queue, delay=delay, tries=tries, timeout=timeout, tags=tags)
    except jobs.OptionError as exc:  # the message names the option
        fail(f"--{exc}", EXIT_USAGE)
    except ValueError as exc:  # QueueNameError
        fail(f"--queue: {exc}", EXIT_USAGE)
    try:
        spec = bound.spec(args, kwargs, hz)
    except PayloadError as exc:  # e.g. NaN or 1e400, which json.loads takes
        fail(f"--json: {exc}", EXIT_USAGE)
    click.echo(hz.queue.push([spec])[0])


@main.command()
@common
@click.argument("job_id")
def retry(settings: Settings, job_id: str) -> None:
    """Retry failed job JOB_ID: dispatch a copy; prints the copy's id."""
    from horizon.queue import JobConflict, JobNotFound

    hz = connected(settings)
    try:
        click.echo(hz.queue.retry(job_id))
    except (JobNotFound, JobConflict) as exc:
        fail(str(exc))


@main.group()
def schedule() -> None:
    """Recurring schedules (config `schedule:` and API-created)."""


@schedule.command(name="list")
@common
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def schedule_list(settings: Settings, as_json: bool) -> None:
    """List every schedule with its source and next run time."""
    from horizon.schedules import describe

    rows = describe(connected(settings))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no schedules")
    for row in rows:
        when = row["cron"] or f"every {row['every']:g}s"
        nxt = _utc(row["next_run_at"])
        line = f"{row['name']:<24} {when:<20} {row['job']:<32} {row['source']:<6} next {nxt}"
        click.echo(" ".join([line, *_run_options(row)]))


def _run_options(row: dict[str, Any]) -> list[str]:
    """The tries/timeout/backoff a schedule sets, as ``tries 3``, ``timeout 600s``, ``backoff 10,60s``."""
    words = []
    if row["tries"] is not None:
        words.append(f"tries {row['tries']}")
    if row["timeout"] is not None:
        words.append(f"timeout {row['timeout']:g}s")
    if row["backoff"] is not None:
        words.append(f"backoff {','.join(f'{b:g}' for b in row['backoff'])}s")
    return words


def _utc(when: float) -> str:
    """A unix time as UTC text; the bare number when it is beyond what datetime shows."""
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{when!r} (unix time)"


def _not_nan(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value != value:  # nan passes FloatRange's comparisons
        raise click.BadParameter("nan is not a number of seconds")
    return value


@schedule.command(name="run")
@common
@click.option(
    "--interval", type=click.FloatRange(0.1, MAX_CHECK_INTERVAL), default=1.0, show_default=True, callback=_not_nan,
    help=f"seconds between checks (0.1 to {MAX_CHECK_INTERVAL:g}: a longer gap counts as an outage)",
)
def schedule_run(settings: Settings, interval: float) -> None:
    """Fire due schedules in the foreground without a master (debugging; safe beside masters)."""
    import logging
    import os
    import time

    from horizon.logs import setup_logging
    from horizon.schedules import fire_due

    setup_logging("schedules")
    hz = connected(settings, import_jobs=True)
    owner = f"schedule-run-{os.getpid()}"
    while True:
        try:
            fire_due(hz, owner=owner)
        except Exception:  # redis restarting and the like: try again next second
            logging.getLogger("horizon.schedules").exception("firing schedules failed")
        time.sleep(interval - time.time() % interval)


# --- supervision: master, supervisors, status and control ----------------------------------


@main.command()
@common
@click.option("--check", is_flag=True,
              help="only check the configuration and import the job modules, then exit (0 ok, 2 an error)")
def start(settings: Settings, check: bool) -> None:
    """Run the master supervisor in the foreground (for systemd)."""
    if check:  # what a reload runs before it stops anything (supervisor/reload.py)
        from horizon.bootstrap import ImportJobsError, import_jobs

        try:
            import_jobs(settings)
        except ImportJobsError as exc:
            fail(str(exc), EXIT_USAGE)
        refusal = _redis_refusal(settings)
        if refusal:
            fail(refusal, EXIT_USAGE)
        supervisors = settings.supervisors
        click.echo(f"horizon: configuration ok ({len(supervisors)} supervisor(s) in {settings.environment})")
        return
    from supervisor.children import hold_signals

    hold_signals()  # a HUP or TERM during the imports below waits for the master's handlers
    from horizon.logs import setup_logging
    from supervisor.run import start_master

    setup_logging("master")
    sys.exit(start_master(connected(settings, import_jobs=True, wait=True), reexec=True))


@main.command()
@common
@click.option("--demo", is_flag=True, help="dispatch demo jobs from demo_jobs.py every few seconds")
def up(settings: Settings, demo: bool) -> None:
    """Embedded Redis (unless redis.url is set) + master + web server; Ctrl-C stops everything."""
    from horizon.connection import remove_embedded_url, write_embedded_url
    from horizon.embedded import EmbeddedRedis, EmbeddedRedisError
    from horizon.logs import setup_logging
    from supervisor.run import RedisKeeper, WebServer, start_master

    setup_logging("master")
    keeper = None
    if settings.redis.url is None:
        try:
            server = EmbeddedRedis(settings.redis.embedded.dir, settings.redis.embedded.port).start()
        except EmbeddedRedisError as exc:
            fail(str(exc), EXIT_USAGE)
        keeper = RedisKeeper(server).start()  # started again if it dies
        write_embedded_url(settings, server.url)
        click.echo(f"horizon: embedded redis at {server.url}", err=True)
    web = WebServer(settings)
    try:
        hz = connected(settings, import_jobs=True)
        web.start()
        code = start_master(hz, demo=demo, web=web)
    finally:
        web.stop()
        if keeper is not None:
            keeper.stop()
            remove_embedded_url(settings)
    sys.exit(code)


def _masters(settings: Settings) -> dict:
    from horizon.repositories.supervisors import MasterRepository

    return MasterRepository(connected(settings)).all()


@main.command()
@common
def status(settings: Settings) -> None:
    """Print running, paused or inactive; exit 0 only when running."""
    masters = _masters(settings)
    state = "inactive" if not masters else "running"
    if any(m.get("status") == "paused" for m in masters.values()):
        state = "paused"
    click.echo(state)
    sys.exit(0 if state == "running" else EXIT_FAILURE)


def _command_masters(settings: Settings, command: str, master: str | None) -> None:
    from horizon.repositories.supervisors import CommandQueue, MasterRepository

    hz = connected(settings)
    names = MasterRepository(hz).names() if master is None else [master]
    live = set(MasterRepository(hz).all())
    targets = [n for n in names if n in live]
    if master is not None and not targets:
        fail(f"no running master named {master!r}")
    for name in targets:
        CommandQueue(hz).push(name, command)
    click.echo(f"{command}: sent to {len(targets)} master(s)")


@main.command()
@common
@click.option("--master", default=None, help="only this master (default: every master)")
def pause(settings: Settings, master: str | None) -> None:
    """Pause the masters' workers (they finish their current job)."""
    _command_masters(settings, "pause", master)


@main.command(name="continue")
@common
@click.option("--master", default=None, help="only this master (default: every master)")
def continue_(settings: Settings, master: str | None) -> None:
    """Continue paused masters."""
    _command_masters(settings, "continue", master)


@main.command()
@common
@click.option("--master", default=None, help="only this master (default: every master)")
def terminate(settings: Settings, master: str | None) -> None:
    """Terminate masters gracefully (running jobs finish)."""
    _command_masters(settings, "terminate", master)


def _command_supervisor(settings: Settings, command: str, name: str) -> None:
    from horizon.repositories.supervisors import CommandQueue, SupervisorRepository

    hz = connected(settings)
    records = SupervisorRepository(hz).records()
    targets = [r["name"] for r in records if name in (r["name"], r["name"].split(":", 1)[-1])]
    if not targets:
        fail(f"no running supervisor named {name!r}")
    for target in targets:
        CommandQueue(hz).push(target, command)
    click.echo(f"{command}: sent to {', '.join(targets)}")


@main.command(name="pause-supervisor")
@common
@click.argument("name")
def pause_supervisor(settings: Settings, name: str) -> None:
    """Pause supervisor NAME (full name, or its configured name on every master)."""
    _command_supervisor(settings, "pause", name)


@main.command(name="continue-supervisor")
@common
@click.argument("name")
def continue_supervisor(settings: Settings, name: str) -> None:
    """Continue supervisor NAME."""
    _command_supervisor(settings, "continue", name)


@main.command(name="list")
@common
@click.option("--json", "as_json", is_flag=True, help="print the masters as JSON")
def list_masters(settings: Settings, as_json: bool) -> None:
    """List the running masters."""
    masters = _masters(settings)
    if as_json:
        click.echo(json.dumps(masters, indent=2))
        return
    if not masters:
        click.echo("no master is running")
    for m in masters.values():
        click.echo(f"{m['name']}  pid={m['pid']}  {m['status']}  supervisors={len(m['supervisors'])}")


@main.command()
@common
@click.option("--json", "as_json", is_flag=True, help="print the supervisors as JSON")
def supervisors(settings: Settings, as_json: bool) -> None:
    """List the running supervisors with their processes per queue."""
    found = [s for m in _masters(settings).values() for s in m["supervisors"]]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no supervisor is running")
    for s in found:
        counts = ", ".join(f"{q}={n}" for q, n in s["processes"].items())
        click.echo(f"{s['name']}  pid={s['pid']}  {s['status']}  {counts}")


@main.command()
@common
def purge(settings: Settings) -> None:
    """Kill orphaned horizon processes on this host and forget records of dead local masters."""
    from supervisor.purge import purge as do_purge

    killed, forgotten = do_purge(connected(settings))
    click.echo(f"purged {len(killed)} orphan process(es), forgot {len(forgotten)} dead record(s)")


@main.command()
@common
def snapshot(settings: Settings) -> None:
    """Record one metrics snapshot of every measured job and queue now."""
    from horizon.repositories.metrics import MetricsRepository

    MetricsRepository(connected(settings)).snapshot()
    click.echo("metrics snapshot recorded")


@main.command()
@common
@click.argument("job_id", required=False)
@click.option("--all", "forget_all", is_flag=True, help="forget every failed job")
def forget(settings: Settings, job_id: str | None, forget_all: bool) -> None:
    """Forget failed job JOB_ID (or every failed job with --all)."""
    from horizon.repositories.jobs import JobRepository

    if bool(job_id) == forget_all:
        fail("give either a failed job ID or --all", EXIT_USAGE)
    repo = JobRepository(connected(settings))
    if forget_all:
        click.echo(f"forgot {repo.forget_all_failed()} failed jobs")
        return
    job = repo.get(job_id)
    if job is None:
        fail(f"no job {job_id}")
    if job["status"] != "failed" or not repo.forget(job_id):
        fail(f"job {job_id} is {job['status']}, not failed")
    click.echo(f"forgot failed job {job_id}")


@main.command()
@common
@click.argument("queue")
@click.option("--force", is_flag=True, help="do not ask for confirmation")
def clear(settings: Settings, queue: str, force: bool) -> None:
    """Delete every pending and scheduled job of QUEUE."""
    from horizon.keys import QueueNameError, check_queue_name
    from horizon.repositories.jobs import JobRepository

    try:
        check_queue_name(queue)
    except QueueNameError as exc:
        fail(f"QUEUE: {exc}", EXIT_USAGE)
    repo = JobRepository(connected(settings))
    if not force and not click.confirm(f"Delete every pending and scheduled job of queue {queue!r}?"):
        fail("not cleared", EXIT_FAILURE)
    click.echo(f"cleared {repo.clear_queue(queue)} jobs from queue {queue}")


@main.command()
@common
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn")
@click.option("--bind", default=None, help="host:port (default: web.bind)")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default: web.workers)")
def web(settings: Settings, dev: bool, bind: str | None, workers: int | None) -> None:
    """Serve the API and dashboard (gunicorn; --dev for Flask's server)."""
    from horizon.logs import setup_logging
    from web import create_app
    from web.server import BindRefused, check_bind, serve

    try:
        address = check_bind(settings, bind)
    except (BindRefused, ValueError) as exc:
        fail(str(exc), EXIT_USAGE)
    setup_logging("web")
    hz = connected(settings, import_jobs=True)
    serve(create_app(settings, hz), settings, address, workers=workers, dev=dev)


if __name__ == "__main__":  # pragma: no cover
    main()
