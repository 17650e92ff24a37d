"""What this machine lets the app use: CPUs and memory, as a container sees them.

ZeroGPU documents neither its CPUs nor its RAM, and `os.cpu_count()` counts the host's CPUs, not the container's.
The CPUs are those `os.sched_getaffinity` allows, fewer where a cgroup quota (cgroup v2 `cpu.max`, v1
`cpu.cfs_quota_us`) caps the time; the memory is the cgroup's limit (v2 `memory.max`, v1 `memory.limit_in_bytes`)
or the machine's. `launch.Service` logs both at start and sizes the decoder workers from them.
"""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
MAX_DECODERS = 8
"""Beyond this, more decoder processes only queue for the same inference thread."""
MALLOC_ARENAS = 2
"""glibc's malloc gives each thread that allocates under contention an arena of its own (up to 8 per core), and
each arena keeps what its requests freed: the server's memory grew photo after photo (`python -m bench.soak`)."""
MMAP_THRESHOLD = 128 * 1024
"""Blocks this large or larger are mapped on their own and go back to the system when freed. It is glibc's default,
made fixed: by default glibc raises the threshold to the size of each mapped block freed (up to 32 MB), so after
the first photo's buffers were freed, every later photo's came from the arenas and stayed there (`bench.soak`, 400
requests: +177 MB before, +71 MB after)."""
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt's parameter numbers (glibc malloc.h)


def tune_malloc(arenas: int = MALLOC_ARENAS, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Let this process's threads share `arenas` malloc arenas and map blocks of `mmap_threshold` bytes or more on
    their own (glibc's `mallopt`), before the request threads start; False where the C library is not glibc
    (nothing changed)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = [libc.mallopt(_M_ARENA_MAX, arenas), libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)]
        return all(done)
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class Machine:
    affinity: int  # CPUs this process may run on
    quota: float | None  # CPUs the cgroup's time quota allows (None: no quota)
    memory_bytes: int  # the cgroup's memory limit, else the machine's RAM
    memory_source: str  # where memory_bytes was read

    @property
    def cpus(self) -> int:
        return max(1, min(self.affinity, math.floor(self.quota) if self.quota else self.affinity))

    def decoders(self, budget_mb: int) -> int:
        """Ordinary decoder processes: one per CPU, at most as many as half the memory holds at `budget_mb` each
        beside the app's express worker (`decoding.DecoderPool`; the rest is the model's, Gradio's and the uploads'),
        at least one."""
        by_memory = int(self.memory_bytes / 2 // (max(1, budget_mb) * 2**20)) - 1
        return max(1, min(self.cpus, by_memory, MAX_DECODERS))

    def describe(self) -> str:
        quota = f"{self.quota:g} by the cgroup quota" if self.quota else "no cgroup CPU quota"
        return (
            f"CPUs: {self.cpus} ({self.affinity} in sched_getaffinity, {quota}); "
            f"memory: {self.memory_bytes / 2**30:.1f} GiB ({self.memory_source})"
        )


def read(root: Path = CGROUP) -> Machine:
    memory, source = _memory_limit(Path(root))
    return Machine(len(os.sched_getaffinity(0)), _cpu_quota(Path(root)), memory, source)


def _first_line(path: Path) -> str | None:
    try:
        return path.read_text().split("\n")[0].strip()
    except OSError:
        return None


def _cpu_quota(root: Path) -> float | None:
    v2 = _first_line(root / "cpu.max")  # "max 100000" or "200000 100000"
    if v2:
        quota, period = (v2.split() + ["100000"])[:2]
        return None if quota == "max" else int(quota) / int(period)
    quota, period = _first_line(root / "cpu" / "cpu.cfs_quota_us"), _first_line(root / "cpu" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def _memory_limit(root: Path) -> tuple[int, str]:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        value = _first_line(path)
        if value and value.isdigit() and int(value) < physical:  # v1 writes a huge number for "no limit"
            return int(value), f"cgroup {path.name}"
    return physical, "the machine's RAM, no cgroup limit"
