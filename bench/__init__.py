"""Benchmarks and load tests. `python -m bench.run` measures everything and rewrites BENCHMARKS.md."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUSY_LOAD = 1.0
"""A 1-minute load average above this before a run: someone else had a core, and the run is not a result."""
BUSY_OTHERS = 0.5
"""Cores that other processes used on average during a run, above which it is not a result either."""


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (a value that occurred), as every table in BENCHMARKS.md reports it."""
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


@dataclass
class Load:
    """What else the machine did around a run: the load average before and after it, and the cores other processes
    used during it. The load average after a run counts the run itself (a minute on both cores lifts it past 1.0
    on an idle machine), so the others' share comes from /proc/stat less our own CPU time, children included."""

    before: tuple[float, float, float]
    after: tuple[float, float, float] | None = None
    others_cores: float | None = None
    """Average cores used by other processes during the run; None where /proc/stat cannot be read."""

    @property
    def busy(self) -> bool:
        return self.before[0] > BUSY_LOAD or (self.others_cores or 0.0) > BUSY_OTHERS

    def as_dict(self) -> dict:
        return {"load_before": self.before, "load_after": self.after, "others_cores": self.others_cores}

    @classmethod
    def from_dict(cls, saved: dict) -> Load:
        return cls(tuple(saved["load_before"]), tuple(saved["load_after"]), saved.get("others_cores"))

    def text(self) -> str:
        after = ", ".join(f"{x:.2f}" for x in self.after) if self.after else "not taken"
        others = "not measured" if self.others_cores is None else f"{self.others_cores:.2f} cores"
        return (
            f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in self.before)}; after: {after}; "
            f"other processes during the run: {others} ({os.cpu_count()} cores)."
        )


def _cpu_seconds() -> tuple[float, float, float | None]:
    """(wall clock, our CPU seconds with waited-for children, the whole machine's busy CPU seconds or None)."""
    times = os.times()
    ours = times.user + times.system + times.children_user + times.children_system
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = None
    return time.perf_counter(), ours, busy


def wait_until_quiet(below: float = 0.9, longest_s: float = 300.0) -> None:
    """Wait (up to `longest_s`) until the 1-minute load average is below `below`: a run right after another starts
    at that one's load (it decays by about e each minute), and would read as busy."""
    deadline = time.monotonic() + longest_s
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)


@contextmanager
def measured_load() -> Iterator[Load]:
    """The `Load` around the block: filled in when the block ends."""
    (wall0, ours0, busy0), load = _cpu_seconds(), Load(os.getloadavg())
    try:
        yield load
    finally:
        wall1, ours1, busy1 = _cpu_seconds()
        load.after = os.getloadavg()
        if busy0 is not None and busy1 is not None and wall1 > wall0:
            load.others_cores = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (wall1 - wall0)


def load_header(loads: Sequence[Load]) -> list[str]:
    """The lines at the top of every table: a warning when any run was busy, then each run's load."""
    busy = [load for load in loads if load.busy]
    lines = []
    if busy:
        worst, others = _highest(busy)
        lines.append(
            f"**BUSY machine (load {worst:.2f}, other processes {others:.2f} cores): not a result.** "
            f"Only ratios measured side by side in one process mean anything here."
        )
    if len(loads) == 1:
        lines.append(loads[0].text())
    elif loads:
        highest, others = _highest(loads)
        lines.append(
            f"Each run's load is in its row: 1-minute load average before and after, up to {highest:.2f}; other "
            f"processes up to {others:.2f} cores ({os.cpu_count()} cores)."
        )
    return lines + [""]


def _highest(loads: Sequence[Load]) -> tuple[float, float]:
    """The highest 1-minute load average (before or after) of `loads`, and the most cores other processes used."""
    highest = max(max(run.before[0], run.after[0] if run.after else 0.0) for run in loads)
    return highest, max(run.others_cores or 0.0 for run in loads)


def write_table(lines: Sequence[str], out: Path, loads: Sequence[Load] = ()) -> None:
    """Print a Markdown table, with the load around its runs on top, and keep it at `out` (under runs/ by default:
    BENCHMARKS.md quotes it)."""
    table = "\n".join([*load_header(loads), *lines] if loads else lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    print(table)
