"""Table-driven tests of the pure balancer: no Redis, no clock."""

import math
import random
from itertools import pairwise

import pytest

from supervisor.balancer import (
    BalanceOptions,
    QueueLoad,
    balance,
    initial_processes,
    split_evenly,
)


def loads_of(
    lengths: dict[str, int], processes: dict[str, int], runtimes: dict[str, float] | None = None
) -> dict[str, QueueLoad]:
    """Build loads in the order of lengths; runtimes default to 100 ms."""
    runtimes = runtimes or {}
    return {q: QueueLoad(n, runtimes.get(q, 100.0), processes[q]) for q, n in lengths.items()}


def settle(loads: dict[str, QueueLoad], options: BalanceOptions, steps: int = 200) -> dict:
    """Apply balance until it stops changing; fail if it does not within steps."""
    counts = {q: load.processes for q, load in loads.items()}
    for _ in range(steps):
        nxt = balance(
            {q: QueueLoad(ld.length, ld.runtime_ms, counts[q]) for q, ld in loads.items()}, options
        )
        if nxt == counts:
            return counts
        counts = nxt
    raise AssertionError(f"no fixed point within {steps} steps")


# --- split_evenly / initial_processes / empty ------------------------------------------------

@pytest.mark.parametrize(
    ("queues", "max_processes", "expected"),
    [
        ([], 5, {}),
        (["a"], 3, {"a": 3}),
        (["a", "b"], 4, {"a": 2, "b": 2}),
        (["a", "b", "c"], 10, {"a": 4, "b": 3, "c": 3}),
        (["a", "b", "c"], 5, {"a": 2, "b": 2, "c": 1}),
        (["a", "b", "c"], 2, {"a": 1, "b": 1, "c": 0}),
        (["a", "b"], 0, {"a": 0, "b": 0}),
        (["a", "b", "a"], 3, {"a": 2, "b": 1}),
    ],
)
def test_split_evenly(queues: list[str], max_processes: int, expected: dict[str, int]) -> None:
    result = split_evenly(queues, max_processes)
    assert result == expected
    assert list(result) == list(expected)


def test_split_evenly_rejects_negative() -> None:
    with pytest.raises(ValueError):
        split_evenly(["a"], -1)


@pytest.mark.parametrize(
    ("queues", "min_p", "max_p", "expected"),
    [
        ([], 1, 3, {}),
        (["a", "b"], 1, 10, {"a": 1, "b": 1}),
        (["a", "b"], 3, 10, {"a": 3, "b": 3}),
        (["a", "b"], 0, 10, {"a": 1, "b": 1}),
        (["a", "b", "c"], 2, 5, {"a": 2, "b": 2, "c": 1}),
        (["a", "b", "c"], 1, 2, {"a": 1, "b": 1, "c": 0}),
        (["a", "b"], 1, 0, {"a": 0, "b": 0}),
    ],
)
def test_initial_processes(
    queues: list[str], min_p: int, max_p: int, expected: dict[str, int]
) -> None:
    options = BalanceOptions(min_processes=min_p, max_processes=max_p)
    assert initial_processes(queues, options) == expected


def test_empty_mapping() -> None:
    assert balance({}, BalanceOptions()) == {}


@pytest.mark.parametrize(
    "kwargs",
    [{"strategy": "auto"}, {"min_processes": -1}, {"max_processes": -1}, {"max_shift": 0}],
)
def test_options_reject_invalid(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BalanceOptions(**kwargs)


# --- desired splits (max_shift large, so one step from the floors reaches them) ----------------

BIG = 100


@pytest.mark.parametrize(
    ("strategy", "min_p", "max_p", "lengths", "runtimes", "expected"),
    [
        # time vs size with different runtimes
        ("time", 1, 8, {"a": 10, "b": 10}, {"a": 100, "b": 300}, {"a": 2, "b": 6}),
        ("size", 1, 8, {"a": 10, "b": 10}, {"a": 100, "b": 300}, {"a": 4, "b": 4}),
        ("time", 1, 8, {"a": 30, "b": 10}, {"a": 100, "b": 300}, {"a": 4, "b": 4}),
        ("size", 1, 8, {"a": 30, "b": 10}, {"a": 100, "b": 300}, {"a": 6, "b": 2}),
        # largest remainder, ties to the earlier queue
        ("size", 1, 10, {"a": 5, "b": 5, "c": 5}, {}, {"a": 4, "b": 3, "c": 3}),
        ("size", 1, 10, {"a": 5, "b": 5, "c": 5, "d": 5}, {}, {"a": 3, "b": 3, "c": 2, "d": 2}),
        # a share below the floor gets the floor, the rest is shared by the others
        ("size", 1, 10, {"a": 99, "b": 1}, {}, {"a": 9, "b": 1}),
        ("size", 2, 10, {"a": 97, "b": 2, "c": 1}, {}, {"a": 6, "b": 2, "c": 2}),
        # idle queues desire the floor, a busy one takes the rest
        ("size", 2, 6, {"a": 0, "b": 5}, {}, {"a": 2, "b": 4}),
        ("size", 0, 4, {"a": 5, "b": 0}, {}, {"a": 4, "b": 0}),
        ("size", 1, 5, {"a": 0, "b": 0}, {}, {"a": 1, "b": 1}),
        # unknown runtime = mean of the known ones (300 here): a 3000, b 2000, c idle
        ("time", 1, 6, {"a": 10, "b": 10, "c": 0}, {"a": 0, "b": 200, "c": 400},
         {"a": 3, "b": 2, "c": 1}),
        # no runtime known: time splits like size
        ("time", 1, 8, {"a": 30, "b": 10}, {"a": 0, "b": 0}, {"a": 6, "b": 2}),
        # a runtime of 0 with a long queue still gets processes
        ("time", 1, 5, {"a": 1000, "b": 0}, {"a": 0, "b": 50}, {"a": 4, "b": 1}),
        ("time", 1, 5, {"a": 1000, "b": 1}, {"a": 0, "b": 50}, {"a": 4, "b": 1}),
        # mins exceed max: the guarantee goes to busy queues first, then idle ones, in order
        ("size", 1, 3, {"a": 0, "b": 0, "c": 0, "d": 0, "e": 9}, {},
         {"a": 1, "b": 1, "c": 0, "d": 0, "e": 1}),
        ("size", 2, 5, {"a": 0, "b": 0, "c": 0}, {}, {"a": 2, "b": 2, "c": 1}),
        ("size", 2, 5, {"a": 0, "b": 0, "c": 4}, {}, {"a": 2, "b": 1, "c": 2}),
        ("size", 1, 0, {"a": 5, "b": 5}, {}, {"a": 0, "b": 0}),
    ],
)
def test_desired_split(
    strategy: str,
    min_p: int,
    max_p: int,
    lengths: dict[str, int],
    runtimes: dict[str, float],
    expected: dict[str, int],
) -> None:
    options = BalanceOptions(
        strategy=strategy, min_processes=min_p, max_processes=max_p, max_shift=BIG
    )
    start = initial_processes(list(lengths), options)
    loads = loads_of(lengths, start, runtimes)
    assert balance(loads, options) == expected
    assert settle(loads, options) == expected


# --- step by step ----------------------------------------------------------------------------

# Each row: the lengths fed at that step, and the counts expected after it. The counts of one
# row are the processes of the next.
BACKLOG_SHIFT_1 = [
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 2, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 3, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 4, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 5, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 5, "c": 1}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 4, "c": 1}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 3, "c": 1}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 2, "c": 1}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 1}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 1}),
]

BACKLOG_SHIFT_2 = [
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 3, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 5, "c": 1}),
    ({"a": 0, "b": 500, "c": 0}, {"a": 1, "b": 5, "c": 1}),
    # backlog moves to c: b gives up 2 per step, c takes what is freed
    ({"a": 0, "b": 0, "c": 500}, {"a": 1, "b": 3, "c": 3}),
    ({"a": 0, "b": 0, "c": 500}, {"a": 1, "b": 1, "c": 5}),
    ({"a": 0, "b": 0, "c": 500}, {"a": 1, "b": 1, "c": 5}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 3}),
    ({"a": 0, "b": 0, "c": 0}, {"a": 1, "b": 1, "c": 1}),
]

# Scale-downs first, then freed capacity to the most starved queue (ties: earlier queue).
# max 6, shift 2: a idle, b and c desire 3 and 2.
STARVED_FIRST = [
    ({"a": 0, "b": 30, "c": 20}, {"a": 2, "b": 3, "c": 1}),
    ({"a": 0, "b": 30, "c": 20}, {"a": 1, "b": 3, "c": 2}),
    ({"a": 0, "b": 30, "c": 20}, {"a": 1, "b": 3, "c": 2}),
]


@pytest.mark.parametrize(
    ("max_p", "shift", "start", "rows"),
    [
        (7, 1, {"a": 1, "b": 1, "c": 1}, BACKLOG_SHIFT_1),
        (7, 2, {"a": 1, "b": 1, "c": 1}, BACKLOG_SHIFT_2),
        (6, 2, {"a": 4, "b": 1, "c": 1}, STARVED_FIRST),
    ],
    ids=["backlog-shift-1", "backlog-shift-2", "starved-first"],
)
def test_steps(
    max_p: int, shift: int, start: dict[str, int], rows: list[tuple[dict, dict]]
) -> None:
    options = BalanceOptions(strategy="size", min_processes=1, max_processes=max_p, max_shift=shift)
    counts = start
    for i, (lengths, expected) in enumerate(rows):
        result = balance(loads_of(lengths, counts), options)
        assert result == expected, f"step {i}"
        assert sum(result.values()) <= max_p
        assert all(abs(result[q] - counts[q]) <= shift for q in result)
        counts = result


@pytest.mark.parametrize(
    ("min_p", "max_p", "shift", "lengths", "processes", "expected"),
    [
        # above max in total (max lowered): cut to max at once, from the most over-provisioned
        (1, 4, 1, {"a": 0, "b": 0}, {"a": 5, "b": 5}, {"a": 2, "b": 2}),
        (1, 4, 1, {"a": 9, "b": 0}, {"a": 5, "b": 5}, {"a": 3, "b": 1}),
        # below the floor (min raised): jump to it
        (3, 10, 1, {"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 3, "b": 3}),
        # within bounds: max_shift holds
        (1, 10, 3, {"a": 0, "b": 9}, {"a": 8, "b": 1}, {"a": 5, "b": 4}),
    ],
)
def test_hard_bounds_win_over_shift(
    min_p: int,
    max_p: int,
    shift: int,
    lengths: dict[str, int],
    processes: dict[str, int],
    expected: dict[str, int],
) -> None:
    options = BalanceOptions(
        strategy="size", min_processes=min_p, max_processes=max_p, max_shift=shift
    )
    assert balance(loads_of(lengths, processes), options) == expected


# --- random steady loads: bounds in every step, a fixed point, and no oscillation -------------

def random_case(seed: int) -> tuple[dict[str, QueueLoad], BalanceOptions]:
    rng = random.Random(seed)
    names = [f"q{i}" for i in range(rng.randint(1, 6))]
    options = BalanceOptions(
        strategy=rng.choice(["time", "size"]),
        min_processes=rng.randint(0, 3),
        max_processes=rng.randint(0, 24),
        max_shift=rng.randint(1, 4),
    )
    loads = {
        q: QueueLoad(
            length=rng.choice([0, 0, rng.randint(1, 20), rng.randint(1, 5000)]),
            runtime_ms=rng.choice([0.0, rng.uniform(0.5, 50.0), rng.uniform(50.0, 5000.0)]),
            processes=rng.randint(0, options.max_processes + 3),
        )
        for q in names
    }
    return loads, options


@pytest.mark.parametrize("start", ["random", "initial"])
@pytest.mark.parametrize("seed", range(40))
def test_steady_load_reaches_fixed_point(seed: int, start: str) -> None:
    loads, options = random_case(seed)
    if start == "initial":  # in bounds from the start: the gradual path, max_shift from step 0
        first = initial_processes(list(loads), options)
        loads = {q: QueueLoad(ld.length, ld.runtime_ms, first[q]) for q, ld in loads.items()}
    in_bounds = start == "initial"
    n = len(loads)
    mins_fit = n * options.min_processes <= options.max_processes
    start_max = max(load.processes for load in loads.values())
    limit = 2 * math.ceil(max(options.max_processes, start_max) / options.max_shift) + 2

    counts = {q: load.processes for q, load in loads.items()}
    history = []
    for step in range(limit + 50):
        feed = {q: QueueLoad(ld.length, ld.runtime_ms, counts[q]) for q, ld in loads.items()}
        result = balance(feed, options)
        assert result == balance(feed, options), "deterministic"
        assert list(result) == list(loads)
        assert sum(result.values()) <= options.max_processes
        assert all(c >= 0 for c in result.values())
        if mins_fit:
            assert all(c >= options.min_processes for c in result.values())
        if step > 0 or in_bounds:  # in bounds after the first step, so max_shift holds
            assert all(abs(result[q] - counts[q]) <= options.max_shift for q in result)
        history.append(result)
        counts = result

    fixed = history[limit - 1]
    assert history[limit - 1 :] == [fixed] * 51, "fixed within the limit and stays for 50 steps"

    # The fixed point does not depend on where the processes started.
    other = {q: QueueLoad(ld.length, ld.runtime_ms, 0) for q, ld in loads.items()}
    assert settle(other, options) == fixed


@pytest.mark.parametrize("seed", range(10))
def test_fixed_point_is_monotone_approach(seed: int) -> None:
    """On a steady load no queue's count ever reverses direction (no oscillation)."""
    loads, options = random_case(1000 + seed)
    counts = balance(loads, options)  # first step brings counts within bounds
    directions: dict[str, int] = {}
    for _ in range(60):
        feed = {q: QueueLoad(ld.length, ld.runtime_ms, counts[q]) for q, ld in loads.items()}
        result = balance(feed, options)
        for q in result:
            delta = result[q] - counts[q]
            if delta:
                sign = 1 if delta > 0 else -1
                assert directions.setdefault(q, sign) == sign, f"{q} reversed"
        counts = result


# --- running jobs count as load; hysteresis (a steady load that keeps its list empty) ----------

def steady_stream(
    counts: dict[str, int], backlog: int, step: int, *, rate: float, runtime_s: float, cooldown: float
) -> tuple[QueueLoad, int]:
    """What the supervisor sees of one queue fed ``rate`` jobs/s of ``runtime_s`` s each during a
    cooldown served by ``counts['default']`` processes: the backlog left, and the busiest moment's
    running jobs, which jitters by one from window to window (arrivals and job ends overlap)."""
    processes = counts["default"]
    backlog = max(0, round(backlog + rate * cooldown - processes * cooldown / runtime_s))
    running = min(processes, math.ceil(rate * runtime_s) + step % 2)
    return QueueLoad(backlog, runtime_s * 1000, processes, running), backlog


def test_steady_load_that_keeps_its_list_empty_settles() -> None:
    """The reported case: 6 jobs/s of 0.5 s (3 busy processes), max 6, shift 1, cooldown 3. Fed
    only the list length, a queue whose processes keep up looked idle whenever its list was empty
    and cycled 2-3-4-5-4-3-2 for good; its running jobs keep it loaded, so it settles."""
    options = BalanceOptions(strategy="time", min_processes=1, max_processes=6, max_shift=1)
    counts, backlog, history = initial_processes(["default", "other"], options), 0, []
    for step in range(40):
        load, backlog = steady_stream(counts, backlog, step, rate=6, runtime_s=0.5, cooldown=3)
        counts = balance({"default": load, "other": QueueLoad(0, 0.0, counts["other"])}, options)
        history.append((counts["default"], backlog))
    ramp = next(i for i, (_, left) in enumerate(history) if i and left == 0)
    sizes = [size for size, _ in history[ramp:]]
    assert ramp < 10, history
    assert all(left == 0 for _, left in history[ramp:]), history  # it keeps up...
    assert min(sizes) >= 3 and sum(a != b for a, b in pairwise(sizes)) <= 1, history  # ...and settles
    assert len(set(sizes[-20:])) == 1, history


@pytest.mark.parametrize(
    ("length", "running", "processes", "expected"),
    [
        (0, 4, 4, 4),  # every process busy, empty list: not idle, keeps them all
        (0, 3, 4, 4),  # one idle at the busiest moment: held as the spare
        (0, 3, 5, 4),  # two idle even at the busiest moment: down to one spare
        (0, 1, 6, 5),  # ... by max_shift per step
        (1, 4, 4, 5),  # a job waits with every process busy: one more
        (3, 3, 3, 4),  # a backlog grows by max_shift per step
        (0, 0, 4, 3),  # nothing running, nothing waiting: idle, down toward the floor
        (2, 0, 1, 2),  # waiting jobs only: one process per job...
        (9, 0, 1, 2),  # ... up by max_shift per step
    ],
)
def test_running_jobs_and_hysteresis(length: int, running: int, processes: int, expected: int) -> None:
    options = BalanceOptions(strategy="time", min_processes=1, max_processes=6, max_shift=1)
    loads = {"default": QueueLoad(length, 500.0, processes, running)}
    assert balance(loads, options) == {"default": expected}


@pytest.mark.parametrize(
    ("strategy", "loads", "expected"),
    [
        # a queue gets no more processes than it has jobs: 2 jobs of 10 s beside a long list of
        # short ones take 2 processes, not the 7 their time share would give (the rest is b's)
        ("time", {"a": QueueLoad(2, 10_000.0, 1), "b": QueueLoad(100, 20.0, 1)}, {"a": 2, "b": 6}),
        ("size", {"a": QueueLoad(2, 0.0, 1), "b": QueueLoad(100, 0.0, 1)}, {"a": 1, "b": 7}),
        # what nobody can use stays unused
        ("size", {"a": QueueLoad(2, 0.0, 1), "b": QueueLoad(1, 0.0, 1)}, {"a": 2, "b": 1}),
        # running jobs weigh like waiting ones: b's 6 running keep b's share against a's list
        ("size", {"a": QueueLoad(6, 0.0, 2), "b": QueueLoad(0, 0.0, 6, 6)}, {"a": 4, "b": 4}),
    ],
)
def test_shares_are_capped_by_jobs(strategy: str, loads: dict[str, QueueLoad], expected: dict) -> None:
    options = BalanceOptions(strategy=strategy, min_processes=1, max_processes=8, max_shift=BIG)
    assert balance(loads, options) == expected


@pytest.mark.parametrize("seed", range(40))
def test_steady_running_load_reaches_fixed_point_without_reversal(seed: int) -> None:
    """With running jobs (so with the hold band) a steady load still converges, monotonically."""
    loads, options = random_case(2000 + seed)
    rng = random.Random(seed)
    loads = {q: QueueLoad(ld.length // 50, ld.runtime_ms, ld.processes, rng.randint(0, 8)) for q, ld in loads.items()}
    limit = 2 * math.ceil((options.max_processes + 3) / options.max_shift) + 2
    counts, directions, history = balance(loads, options), {}, []
    for _ in range(limit + 30):
        feed = {q: QueueLoad(ld.length, ld.runtime_ms, counts[q], ld.running) for q, ld in loads.items()}
        result = balance(feed, options)
        assert sum(result.values()) <= options.max_processes
        for q in result:
            if delta := result[q] - counts[q]:
                assert directions.setdefault(q, delta > 0) == (delta > 0), f"{q} reversed"
        history.append(result)
        counts = result
    assert history[limit:] == [history[limit]] * 30
