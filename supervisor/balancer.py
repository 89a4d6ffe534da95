"""Pure process balancing for a supervisor: loads and options in, target process counts out.

No Redis, no clock. ``split_evenly`` is the ``simple`` strategy, ``balance`` one step of ``auto``
(called once per ``balance_cooldown``), ``initial_processes`` the ``auto`` starting point.

Rules of ``balance`` (queue priority order = the order of the ``loads`` mapping):

- Workload: ``size`` = length; ``time`` = length x runtime_ms, where an unknown runtime (0,
  negative or not finite) counts as the mean of the known runtimes in the same call, or 1 ms when
  none is known (then ``time`` splits like ``size``). Negative lengths and processes count as 0.
- Floors: every queue is guaranteed ``min_processes``. When that needs more than
  ``max_processes``, the guarantee is ``max_processes`` split evenly (``split_evenly``) over the
  queues with work first, then the idle ones, each in priority order, and capped at
  ``min_processes``: the total never exceeds ``max_processes``.
- Desired counts: ``max_processes`` shared out proportionally to workload among the queues with
  work (a queue whose share falls below its floor gets the floor and leaves the sharing); idle
  queues desire their floor. Integer counts by largest remainder, ties to the earlier queue.
- The step: each queue moves from its current count toward its desired count by at most
  ``max_shift``. Scale-downs apply first; the capacity left under ``max_processes`` then goes
  one process at a time to the queue furthest below its desired count (ties: earlier queue).
  Desired counts depend only on the loads, and no queue ever overshoots them, so a steady load
  converges to a fixed point and stays there.
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
    desired = _desired(names, work, floors, options.max_processes)
    current = {q: max(0, loads[q].processes) for q in names}
    return _step(names, current, desired, floors, options)


def _known(runtime_ms: float) -> bool:
    """Whether a runtime estimate is usable."""
    return math.isfinite(runtime_ms) and runtime_ms > 0


def _workloads(loads: Mapping[str, QueueLoad], strategy: str) -> dict[str, Fraction]:
    """Exact workload per queue for the strategy (unknown runtime = mean of known ones, or 1)."""
    lengths = {q: Fraction(max(0, load.length)) for q, load in loads.items()}
    if strategy == "size":
        return lengths
    known = [Fraction(load.runtime_ms) for load in loads.values() if _known(load.runtime_ms)]
    fallback = sum(known, Fraction(0)) / len(known) if known else Fraction(1)
    return {
        q: lengths[q] * (Fraction(load.runtime_ms) if _known(load.runtime_ms) else fallback)
        for q, load in loads.items()
    }


def _floors(names: list[str], work: dict[str, Fraction], options: BalanceOptions) -> dict[str, int]:
    """Guaranteed processes per queue: min_processes, or an even split (busy first) if short."""
    busy_first = [q for q in names if work[q] > 0] + [q for q in names if work[q] == 0]
    even = split_evenly(busy_first, options.max_processes)
    return {q: min(options.min_processes, even[q]) for q in names}


def _desired(
    names: list[str], work: dict[str, Fraction], floors: dict[str, int], max_processes: int
) -> dict[str, int]:
    """Desired counts: max_processes shared by workload above the floors; idle queues at floor."""
    desired = dict(floors)
    active = [q for q in names if work[q] > 0]
    budget = max_processes - sum(floors[q] for q in names if work[q] == 0)
    while active:
        total = sum((work[q] for q in active), Fraction(0))
        shares = {q: budget * work[q] / total for q in active}
        low = [q for q in active if shares[q] < floors[q]]
        if not low:
            desired.update(_largest_remainder(shares, budget))
            break
        budget -= sum(floors[q] for q in low)
        active = [q for q in active if q not in low]
    return desired


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
