"""Jobs for the benchmarks."""

from horizon import job


@job(name="bench.noop")
def noop() -> None:
    return None
