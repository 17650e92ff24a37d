"""Benchmarks and load tests. `python -m bench.run` measures everything and rewrites BENCHMARKS.md."""

from collections.abc import Sequence


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (a value that occurred), as every table in BENCHMARKS.md reports it."""
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]
