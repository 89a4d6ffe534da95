"""Continuations, batches and idempotency keys with real worker processes."""

from __future__ import annotations

import json
import uuid

import pytest

import horizon
from horizon.repositories.queues import IdempotencyConflict, ParentMissing, ParentTerminal
from horizon.workflows import retry_batch
from tests import sample_jobs
from tests.helpers import wait_for


def status(hz, job_id):
    return hz.redis.hget(hz.keys.job(job_id), "status")


def key():
    return "wf-" + uuid.uuid4().hex[:8]


def test_continuation_runs_only_after_its_parent(hz, procs, redis_client):
    log = key()
    parent = sample_jobs.sleep.dispatch(log, 0.3)
    child = sample_jobs.record.options(after=parent).dispatch(log, "child")
    assert status(hz, child) == "scheduled"
    assert redis_client.smembers(hz.keys.children(parent)) == {child}
    worker = procs.horizon("work")
    wait_for(lambda: status(hz, child) == "completed", timeout=20)
    entries = redis_client.lrange(log, 0, -1)
    assert entries[0].startswith("start:") and entries[1] == "end" and entries[2].startswith("child:")
    assert float(hz.redis.hget(hz.keys.job(child), "reserved_at")) >= float(
        hz.redis.hget(hz.keys.job(parent), "completed_at")
    )
    worker.terminate()
    redis_client.delete(log)


def test_parent_failing_for_good_cancels_children_recursively(hz, procs, redis_client):
    log = key()
    parent = sample_jobs.fail.dispatch(log)
    child = sample_jobs.record.options(after=parent).dispatch(log, "child")
    grandchild = sample_jobs.record.options(after=child).dispatch(log, "grandchild")
    procs.horizon("work")
    wait_for(lambda: status(hz, grandchild) == "cancelled", timeout=20)
    assert status(hz, parent) == "failed"
    assert status(hz, child) == "cancelled"
    events = [e[1] for e in redis_client.xrange(hz.keys.events())]
    cancelled = [json.loads(e["data"])["job_id"] for e in events if e["event"] == "job:cancelled"]
    assert cancelled == [child, grandchild]
    assert len(redis_client.lrange(log, 0, -1)) == 1  # only the parent ran
    redis_client.delete(log)


def test_cancelled_parent_cancels_its_child(hz, redis_client):
    log = key()
    parent = sample_jobs.record.options(delay=60).dispatch(log, "parent")
    child = sample_jobs.record.options(after=parent).dispatch(log, "child")
    assert hz.scripts.call("cancel", parent) == 2
    assert status(hz, parent) == "cancelled"
    assert status(hz, child) == "cancelled"


def test_after_a_missing_or_failed_parent_is_refused(hz):
    with pytest.raises(ParentMissing, match="does not exist"):
        sample_jobs.noop.options(after=str(uuid.uuid4())).dispatch()
    parent = sample_jobs.noop.options(delay=60).dispatch()
    hz.scripts.call("cancel", parent)
    with pytest.raises(ParentTerminal, match="cancelled"):
        sample_jobs.noop.options(after=parent).dispatch()


def test_idempotent_dispatch_returns_the_first_id(hz, redis_client):
    first = sample_jobs.add.options(idempotency_key="order-7").dispatch("k", 1, 2)
    again = sample_jobs.add.options(idempotency_key="order-7").dispatch("k", 1, 2)
    assert again == first
    assert redis_client.llen(hz.keys.queue("default")) == 1
    with pytest.raises(IdempotencyConflict, match=first):
        sample_jobs.add.options(idempotency_key="order-7").dispatch("k", 5, 5)
    ttl = redis_client.ttl(hz.keys.idempotency("order-7"))
    assert 0 < ttl <= hz.settings.idempotency_ttl


def test_batch_runs_then_and_finally_and_counts(hz, procs, redis_client):
    log = key()
    bid = horizon.batch(
        [sample_jobs.record.call(log, i) for i in range(5)],
        name="five",
        then=sample_jobs.record.call(log, "then"),
        catch=sample_jobs.record.call(log, "catch"),
        finally_=sample_jobs.record.call(log, "finally"),
    )
    procs.horizon("work")
    bk = hz.keys.batch(bid)
    wait_for(lambda: redis_client.hget(bk, "finished_at"), timeout=20)
    wait_for(lambda: redis_client.llen(log) == 7, timeout=20)
    values = [e.split(":")[0] for e in redis_client.lrange(log, 0, -1)]
    assert sorted(values[:5]) == ["0", "1", "2", "3", "4"]
    assert sorted(values[5:]) == ["finally", "then"]
    b = redis_client.hgetall(bk)
    assert (b["total_jobs"], b["pending_jobs"], b["failed_jobs"]) == ("5", "0", "0")
    assert status(hz, b["catch_id"]) == "cancelled"
    redis_client.delete(log)


def test_batch_with_a_failure_runs_catch_and_finally_then_retries(hz, procs, redis_client):
    log = key()
    bid = horizon.batch(
        [sample_jobs.record.call(log, "ok"), sample_jobs.fail.call(log)],
        then=sample_jobs.record.call(log, "then"),
        catch=sample_jobs.record.call(log, "catch"),
        finally_=sample_jobs.record.call(log, "finally"),
    )
    worker = procs.horizon("work")
    bk = hz.keys.batch(bid)
    wait_for(lambda: redis_client.hget(bk, "finished_at"), timeout=20)
    b = wait_for(lambda: (b := redis_client.hgetall(bk)) and status(hz, b["finally_id"]) == "completed" and b)
    wait_for(lambda: status(hz, b["catch_id"]) == "completed")
    assert status(hz, b["then_id"]) == "cancelled"
    assert b["failed_jobs"] == "1" and b["pending_jobs"] == "0"
    failed_id = json.loads(b["failed_job_ids"])[0]
    copies = retry_batch(hz, bid)
    assert len(copies) == 1
    assert redis_client.hget(hz.keys.job(copies[0]), "retry_of") == failed_id
    wait_for(lambda: status(hz, copies[0]) == "failed", timeout=20)
    wait_for(lambda: redis_client.hget(bk, "failed_jobs") == "1")
    worker.terminate()
    redis_client.delete(log)


def test_retrying_one_failed_member_counts_it_in_its_batch_again(hz, redis_client):
    log = key()
    bid = horizon.batch([sample_jobs.record.call(log, 1), sample_jobs.record.call(log, 2)])
    bk = hz.keys.batch(bid)
    first, _ = hz.queue.reserve(["default"])
    hz.queue.finish(first, "failed_final", 1.0, json.dumps({"class": "E", "message": "x", "traceback": ""}))
    b = redis_client.hgetall(bk)
    assert (b["pending_jobs"], b["failed_jobs"], json.loads(b["failed_job_ids"])) == ("1", "1", [first.id])
    copy = hz.queue.retry(first.id)
    assert redis_client.hget(hz.keys.job(copy), "batch_id") == bid
    b = redis_client.hgetall(bk)
    assert (b["pending_jobs"], b["failed_jobs"], json.loads(b["failed_job_ids"])) == ("2", "0", [])
    for _ in range(2):
        job, _ = hz.queue.reserve(["default"])
        hz.queue.finish(job, "completed", 1.0)
    b = redis_client.hgetall(bk)
    assert (b["pending_jobs"], b["failed_jobs"]) == ("0", "0") and b["finished_at"]
    # a failed job outside any batch is retried as before: no batch field on the copy
    alone = sample_jobs.record.dispatch(log, 3)
    job, _ = hz.queue.reserve(["default"])
    assert job.id == alone
    hz.queue.finish(job, "failed_final", 1.0, json.dumps({"class": "E", "message": "x", "traceback": ""}))
    assert redis_client.hget(hz.keys.job(hz.queue.retry(alone)), "batch_id") is None


def test_a_batch_transaction_run_again_keeps_its_counts(hz, redis_client):
    """The batch transaction run again (the client retried it after its reply was lost) must not
    reset a batch whose members have finished since: its callbacks would never run."""
    from horizon.workflows import _spec, push_batch

    log = key()
    members = [_spec(sample_jobs.record.call(log, n), hz) for n in (1, 2)]
    then = _spec(sample_jobs.record.call(log, "then"), hz)
    bid = push_batch(hz, members, callbacks={"then": then})
    job, _ = hz.queue.reserve(["default"])
    hz.queue.finish(job, "completed", 1.0)
    before = redis_client.hgetall(hz.keys.batch(bid))
    assert before["pending_jobs"] == "1"
    # the transaction's calls again, as redis-py's retry sends them
    assert hz.scripts.call("batch", bid, "", 2, "then", *then.argv()) == bid
    assert hz.scripts.call("push", 2, *[a for s in members for a in s.argv()]) == 0
    assert redis_client.hgetall(hz.keys.batch(bid)) == before
    assert status(hz, then.id) == "scheduled" and status(hz, job.id) == "completed"
    last, _ = hz.queue.reserve(["default"])
    hz.queue.finish(last, "completed", 1.0)
    assert status(hz, then.id) == "pending"  # released: the batch finished


def test_cancelled_batch_member_counts_as_failed_and_finishes_the_batch(hz, redis_client):
    log = key()
    bid = horizon.batch([sample_jobs.record.call(log, 1)], finally_=sample_jobs.record.call(log, "finally"))
    member = redis_client.lrange(hz.keys.queue("default"), 0, -1)[0]
    hz.scripts.call("cancel", member)
    b = redis_client.hgetall(hz.keys.batch(bid))
    assert (b["pending_jobs"], b["failed_jobs"]) == ("0", "1") and b["finished_at"]
    assert status(hz, b["finally_id"]) == "pending"


def test_jobs_removed_before_they_finish_release_what_waits_for_them(hz, redis_client):
    """A drained queue, or a job deleted while it runs, can never finish: as a cancel would, its
    waiting children are cancelled (recursively) and its batch counts it failed, so the batch
    finishes and its callbacks run. Before, a drain left the children waiting and the batch
    pending for ever, and deleting a running batch member did too."""
    from horizon.repositories.queues import QueueRepository

    log = key()
    parent = sample_jobs.record.dispatch(log, "parent")
    child = sample_jobs.record.options(after=parent).dispatch(log, "child")
    grandchild = sample_jobs.record.options(after=child).dispatch(log, "grandchild")
    bid = horizon.batch([sample_jobs.record.call(log, i) for i in range(2)],
                        then=sample_jobs.record.call(log, "then"), finally_=sample_jobs.record.call(log, "finally"))
    repo = QueueRepository(hz)
    # the parent and both members; the batch then finishes, and its finally callback, released
    # into the same queue as the drain goes, is drained with the rest
    assert repo.drain("default") == 4
    assert (status(hz, child), status(hz, grandchild)) == ("cancelled", "cancelled")
    b = redis_client.hgetall(hz.keys.batch(bid))
    assert (b["pending_jobs"], b["failed_jobs"]) == ("0", "2") and b["finished_at"]
    assert (status(hz, b["then_id"]), status(hz, b["finally_id"])) == ("cancelled", None)

    finally_ = sample_jobs.record.call(log, "finally")
    running_bid = horizon.batch([sample_jobs.record.call(log, "member")], finally_=finally_)
    (member,) = hz.queue.reserve_many(["default"], 1, worker="w")[0]  # a worker runs it
    assert repo.delete(member.id)
    b = redis_client.hgetall(hz.keys.batch(running_bid))
    assert (b["pending_jobs"], b["failed_jobs"]) == ("0", "1") and b["finished_at"]
    assert status(hz, b["finally_id"]) == "pending"


def test_batch_members_and_callbacks_take_their_own_options(hz, redis_client):
    """``fn.options(...).call(...)``: a batch member on another queue with its own tries and tags,
    a callback on its own queue. Before, a JobCall carried no options: every member went to its
    job's default queue. A parent or idempotency key of its own is refused."""
    log = key()
    member = sample_jobs.record.options(queue="images", tries=3, tags=["photo"]).call(log, 1)
    bid = horizon.batch([member], then=sample_jobs.record.options(queue="notify").call(log, "then"))
    (job_id,) = redis_client.lrange(hz.keys.queue("images"), 0, -1)
    h = redis_client.hgetall(hz.keys.job(job_id))
    assert (h["queue"], h["tries"], json.loads(h["tags"])) == ("images", "3", [f"key:{log}", "photo"])
    then_id = redis_client.hget(hz.keys.batch(bid), "then_id")
    assert redis_client.hget(hz.keys.job(then_id), "queue") == "notify"
    with pytest.raises(ValueError, match="cannot have 'after'"):
        sample_jobs.record.options(after=job_id).call(log, 2)


FAILURE = json.dumps({"class": "E", "message": "x", "traceback": ""})


def _run_members(hz, failing: str = "") -> None:
    """Reserve and finish every job waiting on 'default': completed, or failed for good when its
    payload mentions ``failing``."""
    while True:
        job, _ = hz.queue.reserve(["default"])
        if job is None:
            return
        bad = failing and failing in job.payload
        hz.queue.finish(job, "failed_final" if bad else "completed", 1.0, FAILURE if bad else "")


def test_a_batch_retried_to_success_runs_its_then_callback(hz, redis_client):
    """A batch that finished with a failure cancels its then callback (and what waits for it); a
    retry that completes the failed member runs it after all, as Laravel's batches do. Before, the
    then callback stayed cancelled: the batch showed 0 failed and 100% but never ran it."""
    log = key()
    callback = lambda what: sample_jobs.record.options(queue="callbacks").call(log, what)  # noqa: E731
    bid = horizon.batch([sample_jobs.record.call(log, "ok"), sample_jobs.record.call(log, "bad")],
                        then=callback("then"), catch=callback("catch"), finally_=callback("finally"))
    b = redis_client.hgetall(hz.keys.batch(bid))
    after_then = sample_jobs.record.options(queue="callbacks", after=b["then_id"]).dispatch(log, "after-then")
    _run_members(hz, failing="bad")
    assert (status(hz, b["then_id"]), status(hz, after_then)) == ("cancelled", "cancelled")
    assert (status(hz, b["catch_id"]), status(hz, b["finally_id"])) == ("pending", "pending")

    (copy,) = retry_batch(hz, bid)
    assert (status(hz, b["then_id"]), status(hz, after_then)) == ("scheduled", "scheduled")
    assert redis_client.zscore(hz.keys.index("pending"), b["then_id"]) is not None
    _run_members(hz)  # the copy completes
    assert status(hz, copy) == "completed"
    assert status(hz, b["then_id"]) == "pending"
    assert status(hz, after_then) == "scheduled"  # it waits for the then callback to complete
    callbacks = redis_client.lrange(hz.keys.queue("callbacks"), 0, -1)
    assert sorted(callbacks) == sorted([b["then_id"], b["catch_id"], b["finally_id"]])  # each once
    b = redis_client.hgetall(hz.keys.batch(bid))
    assert (b["pending_jobs"], b["failed_jobs"], b["failed_job_ids"]) == ("0", "0", "[]")


def test_a_user_cancel_is_not_undone_by_a_batch_retry(hz, redis_client):
    log = key()
    bid = horizon.batch([sample_jobs.record.call(log, "bad")],
                        then=sample_jobs.record.options(queue="callbacks").call(log, "then"))
    then_id = redis_client.hget(hz.keys.batch(bid), "then_id")
    assert hz.scripts.call("cancel", then_id) == 1
    _run_members(hz, failing="bad")
    retry_batch(hz, bid)
    _run_members(hz)
    assert status(hz, then_id) == "cancelled"
    assert redis_client.llen(hz.keys.queue("callbacks")) == 0


def test_a_callback_the_batch_cancels_cancels_what_waits_for_it(hz, redis_client):
    """A job chained after a batch's then (the batch failed) or catch (the batch succeeded) is
    cancelled with it. Before, it stayed 'scheduled' for ever, in no queue."""
    log = key()
    callbacks = {"then": sample_jobs.record.call(log, "then"), "catch": sample_jobs.record.call(log, "catch")}
    failing = horizon.batch([sample_jobs.record.call(log, "bad")], **callbacks)
    succeeding = horizon.batch([sample_jobs.record.call(log, "good")], **callbacks)
    waiting = {
        bid: sample_jobs.record.options(after=redis_client.hget(hz.keys.batch(bid), which)).dispatch(log, "after")
        for bid, which in ((failing, "then_id"), (succeeding, "catch_id"))
    }
    grandchild = sample_jobs.record.options(after=waiting[failing]).dispatch(log, "grandchild")
    _run_members(hz, failing="bad")
    assert status(hz, waiting[failing]) == "cancelled" and status(hz, grandchild) == "cancelled"
    assert status(hz, waiting[succeeding]) == "cancelled"


def test_a_queue_retry_retries_failed_batch_members_as_members(hz, redis_client):
    """``POST queues/{name}/retry`` retries a failed member as retry.lua does: the copy is a
    member and the batch counts it pending again, so a later batch retry does not copy it a
    second time. Before, the copy had no batch, the batch kept counting the original failed, and
    a batch retry ran the member again."""
    from horizon.repositories.queues import QueueRepository

    log = key()
    members = [sample_jobs.record.call(log, value) for value in ("bad0", "bad1", "ok")]
    bid = horizon.batch(members, then=sample_jobs.record.options(queue="callbacks").call(log, "then"))
    bk = hz.keys.batch(bid)
    _run_members(hz, failing="bad")
    assert redis_client.hget(bk, "failed_jobs") == "2"
    copies = QueueRepository(hz).retry_all("default")
    assert len(copies) == 2
    assert {redis_client.hget(hz.keys.job(c), "batch_id") for c in copies} == {bid}
    b = redis_client.hgetall(bk)
    assert (b["pending_jobs"], b["failed_jobs"], b["failed_job_ids"]) == ("2", "0", "[]")
    assert "finished_at" not in b
    assert retry_batch(hz, bid) == []
    _run_members(hz)
    assert redis_client.hget(bk, "pending_jobs") == "0"
    assert status(hz, b["then_id"]) == "pending"
