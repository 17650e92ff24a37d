"""Benchmarks and load tests. `python -m bench.run` measures everything and rewrites BENCHMARKS.md."""

from collections.abc import Sequence
from pathlib import Path


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (a value that occurred), as every table in BENCHMARKS.md reports it."""
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def write_table(lines: Sequence[str], out: Path) -> None:
    """Print a Markdown table and keep it at `out` (under runs/ by default: BENCHMARKS.md quotes it)."""
    table = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(table)
