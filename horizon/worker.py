"""The worker loop: block for a job, run it under its timeout, finish it in one round trip.

A busy worker costs one Redis round trip per job (the finish script also reserves the next job);
an idle worker blocks on the queues' wake-up tokens (BRPOP) with a timeout that ends when the
next delayed job is due, then reserves (one script call). TERM finishes the current job, a second
TERM puts it back and stops at once.
"""

from __future__ import annotations

import _signal  # the C module under signal: its getsignal without the enum conversion
import json
import logging
import math
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psutil
import redis

from horizon import jobs, payload
from horizon.connection import WritesRefused
from horizon.context import Horizon
from horizon.queue import Reserved

log = logging.getLogger(__name__)

IDLE_WAIT = 5.0  # longest block on Redis before looking around (parent alive, stop requested)
MEMORY_CHECK_INTERVAL = 1.0
ACK_DELAY = 0.05  # longest a finished prefetched job waits for its acknowledgement (seconds)
TRACEBACK_LIMIT = 20000  # characters of a failed attempt's traceback kept (its end)
MESSAGE_LIMIT = 10000  # characters of its exception's message kept (its start)
OUTPUT_LIMIT = 20000  # characters of a completed job's JSON result kept
LOG_MESSAGE_LIMIT = 500  # characters of an exception's message in a log line
OUTAGE_LOG_INTERVAL = 60.0  # seconds between a worker's "redis unavailable" lines in one outage
MAX_RETRY_DELAY = 5.0  # seconds: the longest wait between a worker's tries while Redis is away

WORKER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)  # stop requests, the job timeout
_WORKER_SIGNAL_SET = frozenset(int(s) for s in WORKER_SIGNALS)

EXIT_OK = 0
EXIT_RECYCLE = 0  # max_jobs / max_time / memory: the supervisor starts a fresh worker
EXIT_HARD_TIMEOUT = 70
EXIT_UNACKNOWLEDGED = 75  # told to stop while Redis was away: jobs left unacknowledged (EX_TEMPFAIL)


class JobTimeout(Exception):
    """The job ran past its timeout."""


class _Interrupt(BaseException):
    """Raised by a signal handler to leave a blocking wait or a job at once."""


_running: Reserved | None = None
_progress_sink: Callable[[str, float], Any] | None = None
PROGRESS_INTERVAL = 0.2  # seconds: a job's progress is written at most this often, its last value at its end
_progress_written = 0.0  # time.monotonic() of the running job's last progress write
_progress_pending: float | None = None  # a value reported since then: written by then or when the job ends


def kill_after(grace: float, margin: float) -> float:
    """Seconds past its timeout after which a running job is over even if it defeated its hard
    timeout (WorkerState.kill_at): after its timeout a job gets the ``grace`` (then the hard
    timeout), and is put back at the reservation ``margin``; the supervisor's kill comes halfway."""
    return (grace + max(margin, grace)) / 2


def progress(value: float) -> bool:
    """Record the running job's progress (0.0-1.0); False outside a job. Writes (a script call and
    a ``job:progress`` event each) come at most every PROGRESS_INTERVAL: a value reported sooner
    is kept and written when the job ends, unless a later one replaces it first. Before, a job
    reporting in a tight loop wrote thousands of events a second and pushed every other event out
    of the capped stream."""
    global _progress_written, _progress_pending
    if _running is None or _progress_sink is None:
        return False
    value = float(value)
    if math.isnan(value):
        raise ValueError("progress must be a number from 0.0 to 1.0, got nan")
    value = min(max(value, 0.0), 1.0)
    now = time.monotonic()
    if now - _progress_written < PROGRESS_INTERVAL:
        _progress_pending = value
        return True
    _progress_written, _progress_pending = now, None
    return bool(_progress_sink(_running.id, value))


def _flush_progress(job: Reserved) -> None:
    """The job ended: write the progress it reported last, if that was not written yet."""
    global _progress_pending
    value, _progress_pending = _progress_pending, None
    if value is None or _progress_sink is None:
        return
    try:
        _progress_sink(job.id, value)
    except redis.RedisError as exc:  # only its progress is lost: the job's outcome is acknowledged
        log.warning("job %s: its last progress (%s) was not written: %s", job.id, value, exc)


def _text(convert: Callable[[Any], str], value: Any) -> str:
    """``str(value)`` or ``repr(value)`` of a job's object, which may raise: never raises itself."""
    try:
        return convert(value)
    except Exception:
        return f"<{type(value).__name__} object: its {convert.__name__}() failed>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters in all)"


def _class_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def exception_detail(exc: BaseException) -> str:
    """The exception JSON kept on a failed attempt: class, message and traceback, each bounded. A
    job's exception may be anything (a message of many megabytes, a __str__ that raises): what is
    kept is clipped, and building it never raises."""
    text = "".join(traceback.format_exception(exc))[-TRACEBACK_LIMIT:]  # (it stands in for a str() that fails)
    message = _clip(_text(str, exc), MESSAGE_LIMIT)
    return json.dumps({"class": _class_name(exc), "message": message, "traceback": text})


def describe(exc: BaseException) -> str:
    """A job's exception in one short line, for the log."""
    return f"{_class_name(exc)}: {_clip(_text(str, exc), LOG_MESSAGE_LIMIT)}"


@dataclass(kw_only=True)
class WorkerOptions:
    queues: Sequence[str]
    name: str = field(default_factory=lambda: f"worker-{os.getpid()}")
    max_jobs: int = 0  # 0 = no limit
    max_time: float = 0  # seconds; 0 = no limit
    memory: int = 0  # MB of USS; 0 = no limit
    stop_when_empty: bool = False
    parent_pid: int | None = None  # exit when this process is gone
    timeout_grace: float | None = None  # how long a job may ignore its timeout (None: the config's)
    prefetch: int = 1  # jobs reserved per round trip from a queue of short jobs (1: no prefetch)


@dataclass
class WorkerState:
    """What the worker reports about itself (the supervisor shows it in heartbeats)."""

    status: str = "starting"
    jobs: int = 0
    job: str = ""  # id of the job running, '' between jobs
    # time.monotonic() by which the running job is over, even if it ignored its timeout and the hard
    # timeout failed too (SIGALRM blocked or taken over by the job's code): past it, the supervisor
    # kills the worker, still before the job's reservation deadline; 0 between jobs
    kill_at: float = 0.0
    started_at: float = field(default_factory=time.time)


class Worker:
    """One worker process serving ``options.queues`` in priority order."""

    def __init__(
        self,
        hz: Horizon,
        options: WorkerOptions,
        on_state: Callable[[WorkerState], Any] | None = None,
    ) -> None:
        self.hz, self.opts = hz, options
        self.queues = list(options.queues)
        # the hard timeout comes before the reservation deadline (see Settings.timeout_grace)
        self.grace = hz.settings.timeout_grace if options.timeout_grace is None else options.timeout_grace
        self.kill_after = kill_after(self.grace, hz.settings.reservation_margin)
        self.state = WorkerState()
        self.on_state = on_state
        self.stopping = False
        self.interruptible = False  # True while blocked in a wait a signal may break
        self.terms = 0
        self.job: Reserved | None = None
        self.timed_out = False
        self.next_due: float | None = None
        self.batch: list[Reserved] = []  # reserved, not started (more than one: prefetched)
        self.done: list[tuple[Reserved, str, float, str]] = []  # run, not yet acknowledged
        self._unacked_since = 0.0
        # an acknowledgement written early, while the batch it reserved for runs: (done, pending)
        self.early: tuple[list[tuple[Reserved, str, float, str]], Any] | None = None
        self._ack_connection: Any = None
        self._memory_checked = 0.0
        self._process = psutil.Process()
        self._handlers: dict[int, Any] = {}  # the handlers of WORKER_SIGNALS when run() starts

    # --- signals: record the request; break a blocking wait ------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self.terms += 1
        self.stopping = True
        if self.interruptible or self.terms > 1:
            raise _Interrupt()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if not self.timed_out:
            self.timed_out = True
            signal.setitimer(signal.ITIMER_REAL, self.grace)
            raise JobTimeout(f"job exceeded its timeout of {self.job.timeout:g}s" if self.job else "timeout")
        # the job swallowed the timeout: record the failure (and what else is held) and leave now
        if self.job is not None:
            detail = json.dumps(
                {
                    "class": "horizon.worker.JobTimeout",
                    "message": "job ignored its timeout and was stopped",
                    "traceback": "",
                }
            )
            self.done.append((self.job, "failed", self.job.timeout * 1000, detail))
            self.job = None
        self.stopping = True  # unstarted prefetched jobs go back with the acknowledgement
        try:
            self.acknowledge(want_next=False)
        except (Exception, _Interrupt):  # Redis away, or a TERM meanwhile: the supervisor puts them back
            pass
        os._exit(EXIT_HARD_TIMEOUT)

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Process jobs until stopped; returns the exit code."""
        global _progress_sink
        _progress_sink = self.hz.queue.progress
        self._handlers = {signum: _signal.getsignal(signum) for signum in WORKER_SIGNALS}  # as set up
        log.info("worker serving %s", ",".join(self.queues))
        tried = False  # the last acknowledgement already tried to reserve and found nothing
        try:
            while not self.should_stop():
                if not self.batch:
                    tried = self.refill(tried)
                    continue
                self.done.append(self.process(self.batch.pop(0)))
                if self.batch and time.monotonic() - self._unacked_since < ACK_DELAY:
                    continue  # prefetched jobs of a short-job queue: acknowledge them together
                if self.should_recycle():
                    self.stopping = True
                if self.batch:  # ACK_DELAY passed mid-batch: acknowledge what is done so far
                    self.acknowledge(want_next=False)
        except _Interrupt:
            if self.job is not None:
                self.done.append((self.job, "release", 0.0, ""))
                log.info("stopped at once; job %s put back", self.job.id)
                self.job = None
        held = len(self.done) + len(self.batch)
        try:
            self.acknowledge(want_next=False)
        except _Interrupt:  # told to stop while Redis is away (see _retrying)
            log.warning("stopping with %d job(s) unacknowledged: redis unavailable; they go back when "
                        "their reservations end (or when the supervisor reaches Redis)", held)
            return EXIT_UNACKNOWLEDGED
        self.report("stopped")
        return EXIT_OK

    def refill(self, tried: bool) -> bool:
        """The batch is used up: take the jobs an early acknowledgement reserved, else acknowledge
        and reserve (or block until woken); then write the next early acknowledgement. Returns
        True when the last reservation looked and found nothing."""
        if self.early is not None:
            self.batch = self.collect_early()
        if not self.batch and (self.done or not tried):
            tried = self.acknowledge(want_next=not self.should_stop())
        if not self.batch and not self.should_stop():
            self.batch = self.wait_for_jobs(tried)
            tried = False
        self.send_early()
        return tried

    def send_early(self) -> None:
        """A prefetched batch is in hand: write the acknowledgement of the jobs done so far, which
        also reserves the next batch, and read its reply only when this batch is used up. Redis
        runs the script while the worker runs jobs. The next batch's reservation windows start
        after this batch's (the sum of its timeouts plus grace)."""
        if self.opts.prefetch <= 1 or len(self.batch) < 2 or self.stopping or self.early is not None:
            return
        if self._jobs_left() <= 0:  # this batch takes the worker to max_jobs: it recycles after it
            return
        offset = sum(job.timeout + self.grace for job in self.batch)
        done, self.done = self.done, []
        try:
            if self._ack_connection is None:
                self._ack_connection = self.hz.scripts.new_connection()
            pending = self.hz.queue.finish_many_start(
                self._ack_connection, done, self.queues, self._reserve_count(), offset, self.opts.name
            )
        except (redis.ConnectionError, redis.TimeoutError):
            self.done = done + self.done  # acknowledged later, the usual way
            return
        self.early = (done, pending)
        self._unacked_since = time.monotonic()

    def collect_early(self) -> list[Reserved]:
        """The reply of the early acknowledgement: the next batch (empty if the reply was lost: its
        attempts are acknowledged again, and the jobs it reserved are put back at once)."""
        assert self.early is not None
        done, pending = self.early
        self.early = None
        try:
            states, jobs, self.next_due = self.hz.queue.finish_many_collect(pending)
        except WritesRefused:  # the script did not run: acknowledged again, and it reserved nothing
            self.done = done + self.done
            return []
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("acknowledgement reply lost (%s); acknowledging again", exc)
            self._ack_connection.disconnect()
            self.done = done + self.done
            self._put_back_lost_batch()
            return []
        self._log_stale(done, states)
        return jobs

    def _put_back_lost_batch(self) -> None:
        """The reply that reserved the next batch was lost: put back what it reserved (see
        :meth:`_put_back_unheld`), waiting for Redis as any call does (once when stopping)."""
        try:
            if self.stopping:
                self._put_back_unheld()
            else:
                self._retrying(self._put_back_unheld)
        except (redis.RedisError, _Interrupt) as exc:
            log.warning("could not put back the jobs a lost reply reserved (%r); their windows apply", exc)

    def _put_back_unheld(self, holding: Sequence[Reserved] = ()) -> None:
        """A reply that reserved jobs was lost, and with it which jobs they are: put back now every
        job reserved in this worker's name except those it holds (``holding`` and what it ran or
        has in hand), instead of when their windows end (a batch's add up to many timeouts)."""
        keep = {job.id for job in holding} | {job.id for job, *_ in self.done} | {job.id for job in self.batch}
        if self.job is not None:
            keep.add(self.job.id)
        count = self.hz.queue.recover_worker(self.opts.name, self.queues, sorted(keep), running="")
        if count:
            log.warning("put back %d job(s) reserved by a lost reply", count)

    def acknowledge(self, want_next: bool) -> bool:
        """Finish the attempts done so far (and put back prefetched jobs when stopping) in one
        round trip that also reserves the next jobs; True when it looked and found none."""
        if self.stopping:
            if self.early is not None:
                self.batch += self.collect_early()
            self.done += [(job, "release", 0.0, "") for job in self.batch]
            self.batch = []
        if not self.done and not want_next:
            return False
        done, self.done = self.done, []
        try:
            states, jobs, self.next_due = self._retrying(
                lambda: self.hz.queue.finish_many(
                    done, self.queues if want_next else None, self._reserve_count(), self.opts.name
                ),
                holding=[job for job, *_ in done] if want_next else None,
            )
        except _Interrupt:  # told to stop while Redis is away: still unacknowledged
            self.done = done + self.done
            raise
        self._log_stale(done, states)
        self.batch += jobs
        self._unacked_since = time.monotonic()
        return want_next and not jobs

    @staticmethod
    def _log_stale(done: Sequence[tuple[Reserved, str, float, str]], states: Sequence[str]) -> None:
        for (job, outcome, _, _), state in zip(done, states, strict=True):
            if state == "stale" and outcome != "release":
                log.warning("job %s: reservation was taken back while it ran", job.id)

    def should_stop(self) -> bool:
        if self.stopping:
            return True
        if self.opts.parent_pid and os.getppid() != self.opts.parent_pid:
            log.warning("parent %s is gone; stopping", self.opts.parent_pid)
            self.stopping = True
        return self.stopping

    def wait_for_jobs(self, tried: bool = False) -> list[Reserved]:
        """Reserve at once if jobs are there, else block until woken (or something is due)."""
        count = self._reserve_count()
        jobs, due = ([], self.next_due) if tried else self._retrying(
            lambda: self.hz.queue.reserve_many(self.queues, count, worker=self.opts.name), holding=()
        )
        while not jobs and not self.should_stop():
            if self.opts.stop_when_empty and due is None:
                self.stopping = True
                return []
            if self.should_recycle():  # max_time (or memory) reached while idle: a fresh worker takes over
                self.stopping = True
                return []
            timeout = IDLE_WAIT if due is None else min(IDLE_WAIT, max(due - time.time(), 0.01))
            if self.opts.max_time:  # wake when max_time is reached, not up to IDLE_WAIT later
                life_left = self.state.started_at + self.opts.max_time - time.time()
                timeout = min(timeout, max(life_left, 0.01))
            self.report("idle")
            self.interruptible = True
            try:
                if self.stopping:
                    return []
                jobs, due = self._retrying(
                    lambda t=timeout: self.hz.queue.wait_and_reserve(self.queues, t, count, self.opts.name),
                    holding=(),
                )
            except _Interrupt:
                return []
            finally:
                self.interruptible = False
        self._unacked_since = time.monotonic()
        return jobs

    def process(self, job: Reserved) -> tuple[Reserved, str, float, str]:
        """Run one job; returns the attempt to acknowledge ``(job, outcome, runtime ms, detail)``."""
        global _running, _progress_written, _progress_pending
        self.job, _running = job, job
        _progress_written, _progress_pending = 0.0, None
        self.state.status, self.state.job = "processing", job.id
        self.state.kill_at = time.monotonic() + job.timeout + self.kill_after
        if self.on_state:  # the supervisor learns which job runs (if this process dies, that try counts)
            self.on_state(self.state)
        outcome, detail, runtime_ms = self.perform(job)
        if _progress_pending is not None:
            _flush_progress(job)
        self._restore_signals(job)
        self.state.jobs += 1
        self.state.job, self.state.kill_at = "", 0.0
        if self.on_state:
            self.on_state(self.state)
        self.job, _running = None, None
        return job, outcome, runtime_ms, detail

    def _restore_signals(self, job: Reserved) -> None:
        """A job that set its own handler for, or blocked, a signal the worker runs on (its timeout's
        SIGALRM, the stop requests) took it from every later job of this worker: none was timed
        out any more (a reservation then expired while the attempt ran: run twice at once), or
        the worker could not be stopped. What the job changed is put back after it."""
        # per job, so the C functions: signal.getsignal's enum conversion costs a microsecond a call
        blocked = _signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS) & _WORKER_SIGNAL_SET
        changed = [signum for signum, handler in self._handlers.items() if _signal.getsignal(signum) is not handler]
        for signum in changed:
            signal.signal(signum, self._handlers[signum])
        if blocked or changed:
            names = ", ".join(sorted(signal.Signals(s).name for s in {*blocked, *changed}))
            log.warning("job %s (%s) took over the worker's %s; restored for the next jobs", job.id, job.name, names)

    def perform(self, job: Reserved) -> tuple[str, str, float]:
        """Run the job's function under its timeout: (outcome, detail, runtime ms)."""
        start = time.perf_counter()
        self.timed_out = False
        try:
            definition = jobs.lookup(job.name)
            args, kwargs = payload.decode(job.payload)
            signal.setitimer(signal.ITIMER_REAL, job.timeout)
            try:
                result = definition.fn(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except (jobs.UnknownJob, jobs.FailForGood) as exc:
            log.error("job %s: %s", job.id, describe(exc))
            return "failed_final", exception_detail(exc), self._elapsed(start)
        except _Interrupt:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # sys.exit() or KeyboardInterrupt raised by the job's code fails the attempt like any
            # exception (the worker's own stops arrive as _Interrupt): before, it ended the worker,
            # and the attempt was charged as a lost worker without its cause
            log.info("job %s (%s) attempt %d failed: %s", job.id, job.name, job.attempts, describe(exc))
            return "failed", exception_detail(exc), self._elapsed(start)
        return "completed", self._output(result), self._elapsed(start)

    @staticmethod
    def _elapsed(start: float) -> float:
        return (time.perf_counter() - start) * 1000

    @staticmethod
    def _output(result: Any) -> str:
        """A completed job's result as JSON: the value itself, else its repr() as a JSON string;
        over OUTPUT_LIMIT, a JSON string of its start. Never raises (a job's object may)."""
        if result is None:
            return ""
        try:
            text = json.dumps(result)
        except Exception:  # not JSON (TypeError), circular (ValueError), or its own code raised
            return json.dumps(_clip(_text(repr, result), OUTPUT_LIMIT))
        return text if len(text) <= OUTPUT_LIMIT else json.dumps(_clip(text, OUTPUT_LIMIT))

    def _jobs_left(self) -> float:
        """Jobs this worker may still take before max_jobs (the ones in hand counted); inf: no limit."""
        if not self.opts.max_jobs:
            return float("inf")
        return self.opts.max_jobs - self.state.jobs - len(self.batch)

    def _reserve_count(self) -> int:
        """How many jobs one reservation takes: prefetch, but not past max_jobs (at least 1)."""
        return int(max(min(self.opts.prefetch, self._jobs_left()), 1))

    def should_recycle(self) -> bool:
        """max_jobs, max_time or memory reached: finish here and let a fresh worker take over."""
        o = self.opts
        if o.max_jobs and self.state.jobs >= o.max_jobs:
            log.info("recycling after %d jobs", self.state.jobs)
            return True
        if o.max_time and time.time() - self.state.started_at >= o.max_time:
            log.info("recycling after %.0fs", time.time() - self.state.started_at)
            return True
        now = time.monotonic()
        if o.memory and now - self._memory_checked >= MEMORY_CHECK_INTERVAL:
            self._memory_checked = now
            uss = self._process.memory_full_info().uss / 2**20
            if uss > o.memory:
                log.warning("memory %.1f MB over the limit of %d MB; recycling", uss, o.memory)
                return True
        return False

    def report(self, status: str) -> None:
        if status != self.state.status:
            self.state.status = status
            if self.on_state:
                self.on_state(self.state)

    def _retrying(self, call: Callable[[], Any], holding: Sequence[Reserved] | None = None) -> Any:
        """Run a Redis call, waiting out connection errors (a Redis restart) and refusals (out of
        memory, read-only: WritesRefused) with backoff, logged once and then once a minute. For a
        call that reserves jobs, ``holding`` is what the worker holds meanwhile: the failed call
        may have run and reserved jobs whose reply was lost, so those are put back before the
        call is tried again (:meth:`_put_back_unheld`)."""
        delay, lost, since, logged = 0.1, False, time.monotonic(), 0.0
        while True:
            try:
                if lost:
                    self._put_back_unheld(holding or ())
                    lost = False
                result = call()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if self.terms and self.job is None:  # told to stop (TERM): do not wait for Redis
                    raise _Interrupt() from exc
                # a refused call wrote nothing; a lost connection may have run the call
                lost = lost or (holding is not None and not isinstance(exc, WritesRefused))
                now = time.monotonic()
                if not logged:
                    log.warning("redis unavailable (%s); retrying, backing off to %gs", exc, MAX_RETRY_DELAY)
                    logged = now
                elif now - logged >= OUTAGE_LOG_INTERVAL:  # once a minute after that
                    log.warning("redis still unavailable after %.0fs (%s); retrying", now - since, exc)
                    logged = now
                time.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
            else:
                if logged:
                    log.warning("redis available again after %.1fs", time.monotonic() - since)
                return result
