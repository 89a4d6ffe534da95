"""Pure process balancing for a supervisor: loads and options in, target process counts out.

No Redis, no clock. ``split_evenly`` is the ``simple`` strategy, ``balance`` one step of ``auto``
(called once per ``balance_cooldown``), ``initial_processes`` the ``auto`` starting point.

Rules of ``balance`` (queue priority order = the order of the ``loads`` mapping):

- Jobs of a queue: those waiting (``length``) plus those its processes run (``running``: the most
  it ran at once since the last step, which the supervisor samples every loop). A queue with no
  jobs is idle. Counting the running jobs matters on a steady load: a queue whose processes keep
  up has an empty list most of the time, yet it is not idle. Negative counts count as 0.
- Workload: ``size`` = jobs; ``time`` = jobs x runtime_ms (as Horizon, whose time is the list
  length x runtime), where an unknown runtime (0, negative or not finite) counts as the mean of
  the known runtimes in the same call, or 1 ms when none is known (then ``time`` splits like
  ``size``).
- Floors: every queue is guaranteed ``min_processes``. When that needs more than
  ``max_processes``, the guarantee is ``max_processes`` split evenly (``split_evenly``) over the
  queues with work first, then the idle ones, each in priority order, and capped at
  ``min_processes``: the total never exceeds ``max_processes``.
- Wants: a queue with jobs can use one process per job and no more. A queue whose processes run
  jobs holds its count while it has between its jobs and one more process (hysteresis: its busy
  count jitters by one from one sample to the next on a steady load), so it grows only when jobs
  wait with every process busy, and shrinks only when two or more of its processes were idle even
  at its busiest moment, down to one spare. A queue with waiting jobs only wants one per job.
- Desired counts: ``max_processes`` (less the idle queues' floors) shared out proportionally to
  workload among the queues with work, each share kept between the queue's floor and its want
  (water-filling: what a queue cannot use goes to the others in proportion; what nobody can use
  stays unused); idle queues desire their floor. Integer counts by largest remainder, ties to
  the earlier queue.
- The step: each queue moves from its current count toward its desired count by at most
  ``max_shift``. Scale-downs apply first; the capacity left under ``max_processes`` then goes
  one process at a time to the queue furthest below its desired count (ties: earlier queue).
  On a steady load a queue's want stays put on the way to its desired count (it depends on the
  current count only inside the hold band, where the count stops), and no queue ever overshoots
  its desired count, so the counts converge to a fixed point and stay there.
- Hard bounds win over ``max_shift``: a queue below its floor jumps to it, and when the current
  total is above ``max_processes`` the step trims down to it (from the queue furthest above its
  desired count; ties: later queue). Within bounds, no count changes by more than ``max_shift``.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

STRATEGIES = ("time", "size")


@dataclass(frozen=True)
class QueueLoad:
    """What the balancer knows about one queue at this step."""

    length: int  # pending jobs in the queue
    runtime_ms: float  # runtime estimate per job (moving average); 0 = unknown
    processes: int  # processes currently running for this queue
    running: int = 0  # most jobs its processes ran at once since the last step

    @property
    def jobs(self) -> int:
        """Jobs in hand: waiting plus running."""
        return max(0, self.length) + max(0, self.running)


@dataclass(frozen=True, kw_only=True)
class BalanceOptions:
    """Balancing options of one supervisor."""

    strategy: str = "time"  # "time": length x runtime; "size": length
    min_processes: int = 1  # per queue
    max_processes: int = 3  # in total over all queues of the supervisor
    max_shift: int = 1  # most processes a queue's count may change by per call

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.min_processes < 0:
            raise ValueError(f"min_processes must be >= 0, not {self.min_processes}")
        if self.max_processes < 0:
            raise ValueError(f"max_processes must be >= 0, not {self.max_processes}")
        if self.max_shift < 1:
            raise ValueError(f"max_shift must be >= 1, not {self.max_shift}")


def split_evenly(queues: Sequence[str], max_processes: int) -> dict[str, int]:
    """Split max_processes evenly, the remainder (or all of it, if too few) to the first queues."""
    if max_processes < 0:
        raise ValueError(f"max_processes must be >= 0, not {max_processes}")
    names = list(dict.fromkeys(queues))
    if not names:
        return {}
    base, extra = divmod(max_processes, len(names))
    return {queue: base + (1 if i < extra else 0) for i, queue in enumerate(names)}


def initial_processes(queues: Sequence[str], options: BalanceOptions) -> dict[str, int]:
    """Start each queue at max(min_processes, 1), capped by an even split of max_processes."""
    start = max(options.min_processes, 1)
    return {q: min(start, n) for q, n in split_evenly(queues, options.max_processes).items()}


def balance(loads: Mapping[str, QueueLoad], options: BalanceOptions) -> dict[str, int]:
    """Return the process count per queue after one auto-balancing step."""
    names = list(loads)
    if not names:
        return {}
    work = _workloads(loads, options.strategy)
    floors = _floors(names, work, options)
    wants = {q: max(floors[q], _want(loads[q])) for q in names}
    desired = _desired(names, work, floors, wants, options.max_processes)
    current = {q: max(0, loads[q].processes) for q in names}
    return _step(names, current, desired, floors, options)


def _known(runtime_ms: float) -> bool:
    """Whether a runtime estimate is usable."""
    return math.isfinite(runtime_ms) and runtime_ms > 0


def _workloads(loads: Mapping[str, QueueLoad], strategy: str) -> dict[str, Fraction]:
    """Exact workload per queue for the strategy (unknown runtime = mean of known ones, or 1)."""
    jobs = {q: Fraction(load.jobs) for q, load in loads.items()}
    if strategy == "size":
        return jobs
    known = [Fraction(load.runtime_ms) for load in loads.values() if _known(load.runtime_ms)]
    fallback = sum(known, Fraction(0)) / len(known) if known else Fraction(1)
    return {
        q: jobs[q] * (Fraction(load.runtime_ms) if _known(load.runtime_ms) else fallback)
        for q, load in loads.items()
    }


def _want(load: QueueLoad) -> int:
    """Processes a queue can use: one per job; a queue running jobs holds within one spare."""
    if load.running <= 0:
        return load.jobs
    return min(max(load.processes, load.jobs), load.jobs + 1)


def _floors(names: list[str], work: dict[str, Fraction], options: BalanceOptions) -> dict[str, int]:
    """Guaranteed processes per queue: min_processes, or an even split (busy first) if short."""
    busy_first = [q for q in names if work[q] > 0] + [q for q in names if work[q] == 0]
    even = split_evenly(busy_first, options.max_processes)
    return {q: min(options.min_processes, even[q]) for q in names}


def _desired(
    names: list[str],
    work: dict[str, Fraction],
    floors: dict[str, int],
    wants: dict[str, int],
    max_processes: int,
) -> dict[str, int]:
    """Desired counts: the budget shared by workload, each within floor..want; idle queues at floor."""
    desired = dict(floors)
    active = {q: work[q] for q in names if work[q] > 0}
    if not active:
        return desired
    budget = max_processes - sum(floors[q] for q in names if work[q] == 0)
    shares = _fill(active, {q: floors[q] for q in active}, {q: wants[q] for q in active}, budget)
    desired.update(_largest_remainder(shares, int(sum(shares.values()))))
    return desired


def _fill(
    work: dict[str, Fraction], low: dict[str, int], high: dict[str, int], budget: int
) -> dict[str, Fraction]:
    """Shares clamp(level x work, low, high) at the level where they sum to budget (water-filling);
    every queue at its high bound when those sum to less. Needs sum(low) <= budget."""
    if sum(high.values()) <= budget:
        return {q: Fraction(high[q]) for q in work}
    if sum(low.values()) >= budget:
        return {q: Fraction(low[q]) for q in work}

    def total(level: Fraction) -> Fraction:
        return sum((_clamp(level * w, low[q], high[q]) for q, w in work.items()), Fraction(0))

    level = Fraction(0)
    for point in sorted({Fraction(bound[q]) / w for bound in (low, high) for q, w in work.items()}):
        if total(point) >= budget:  # total is linear between two breakpoints: interpolate
            below = total(level)
            level += (budget - below) * (point - level) / (total(point) - below)
            break
        level = point
    return {q: _clamp(level * w, low[q], high[q]) for q, w in work.items()}


def _clamp(value: Fraction, low: int, high: int) -> Fraction:
    """value kept within low..high."""
    return min(max(value, Fraction(low)), Fraction(high))


def _largest_remainder(shares: dict[str, Fraction], total: int) -> dict[str, int]:
    """Round shares summing to total into integers summing to total; ties to the earlier queue."""
    counts = {q: math.floor(share) for q, share in shares.items()}
    left = total - sum(counts.values())
    ranked = sorted(shares, key=lambda q: counts[q] - shares[q])  # stable: keeps priority order
    for queue in ranked[:left]:
        counts[queue] += 1
    return counts


def _step(
    names: list[str],
    current: dict[str, int],
    desired: dict[str, int],
    floors: dict[str, int],
    options: BalanceOptions,
) -> dict[str, int]:
    """Move current toward desired: scale-downs first, then freed capacity to the most starved."""
    shift = options.max_shift
    target = {q: _after_scale_down(current[q], desired[q], floors[q], shift) for q in names}
    _trim(names, target, desired, floors, options.max_processes)
    limits = {q: max(target[q], min(desired[q], current[q] + shift)) for q in names}
    _grow(names, target, desired, limits, options.max_processes - sum(target.values()))
    return target


def _after_scale_down(current: int, desired: int, floor: int, shift: int) -> int:
    """A queue's count after scale-downs: down by at most shift, or up to its floor if below."""
    if desired < current:
        return max(desired, current - shift)
    return max(current, floor)


def _trim(
    names: list[str],
    target: dict[str, int],
    desired: dict[str, int],
    floors: dict[str, int],
    max_processes: int,
) -> None:
    """Cut target to max_processes in total, from the queue furthest above desired (ties: later)."""
    order = {q: i for i, q in enumerate(names)}
    while sum(target.values()) > max_processes:
        over = [q for q in names if target[q] > floors[q]]
        queue = max(over, key=lambda q: (target[q] - desired[q], order[q]))
        target[queue] -= 1


def _grow(
    names: list[str],
    target: dict[str, int],
    desired: dict[str, int],
    limits: dict[str, int],
    free: int,
) -> None:
    """Hand out free processes one at a time to the queue furthest below desired (ties: earlier)."""
    order = {q: i for i, q in enumerate(names)}
    while free > 0:
        wanting = [q for q in names if target[q] < limits[q]]
        if not wanting:
            return
        queue = max(wanting, key=lambda q: (desired[q] - target[q], -order[q]))
        target[queue] += 1
        free -= 1
