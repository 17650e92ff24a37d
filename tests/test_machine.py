"""What start-up says about the machine, read from cgroup files as a container has them (written here in a
temporary folder laid out as /sys/fs/cgroup: v2, v1, none)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from bear_classifier.web import machine
from tests.conftest import ROOT

AFFINITY = len(os.sched_getaffinity(0))


def test_cgroup_v2_quota_and_memory_limit(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs of time
    (tmp_path / "memory.max").write_text(f"{2 * 2**30}\n")
    found = machine.read(tmp_path)
    assert found.quota == 1.5 and found.cpus == 1 and found.memory_bytes == 2 * 2**30
    assert found.decoders(768) == 1  # at least one ordinary worker, beside the express one
    assert "1.5 by the cgroup quota" in found.describe() and "cgroup memory.max" in found.describe()


@pytest.mark.skipif(AFFINITY < 2, reason="needs two CPUs to tell the memory's cap from the CPUs'")
def test_the_express_worker_counts_against_the_memory(tmp_path):
    """Half of 3 GiB holds two 768 MB decoders: the express one and one ordinary."""
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text(f"{3 * 2**30}\n")
    assert machine.read(tmp_path).decoders(768) == 1


def test_cgroup_v1_files(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{16 * 2**30}\n")
    found = machine.read(tmp_path)
    assert found.quota == 4 and found.cpus == min(AFFINITY, 4)  # the affinity caps the quota
    assert found.memory_bytes == 16 * 2**30
    assert found.decoders(768) == min(AFFINITY, 4)


def test_no_quota_no_limit_is_the_affinity_and_the_machine_s_memory(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    found = machine.read(tmp_path)
    assert found.quota is None and found.cpus == AFFINITY
    assert found.memory_source == "the machine's RAM, no cgroup limit"
    assert 1 <= found.decoders(768) <= machine.MAX_DECODERS


ARENAS_SCRIPT = """
import ctypes, sys, threading
from bear_classifier.web import machine
from tests.conftest import ROOT
if sys.argv[1] == "shared":
    machine.tune_malloc()
held, together = [], threading.Barrier(8)
def allocate():
    held.append([bytearray(64 * 1024) for _ in range(16)])  # above pymalloc's sizes: from malloc
    together.wait()  # all eight alive at once: an ended thread's arena would go to the next one
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_request_threads_share_two_malloc_arenas():
    """Each thread that allocates gets an arena of its own, which keeps what it freed; the app's request threads
    share two (`machine.tune_malloc`)."""

    def arenas(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", ARENAS_SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return run.stderr.count("Arena ")

    assert arenas("shared") == machine.MALLOC_ARENAS < arenas("own")


MAPPED_SCRIPT = """
import ctypes, sys
from bear_classifier.web import machine
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "tuned":
    machine.tune_malloc()
first = bytearray(8 * 2**20)  # a photo's buffer, mapped on its own...
del first  # ...and freed: by default glibc now maps only blocks over 8 MB
later = bytearray(2**20)
print(libc.mallinfo2().hblkhd)  # bytes in blocks mapped on their own
"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or tuple(map(int, platform.libc_ver()[1].split("."))) < (2, 33),
    reason="mallopt is glibc's, and mallinfo2 (which reads the mapped bytes) glibc 2.33's",
)
def test_large_blocks_go_back_to_the_system_after_the_first_one_is_freed():
    """A freed 8 MB block raises glibc's mapping threshold to 8 MB, so a later 1 MB block comes from an arena, which
    keeps it; tuned, it is mapped on its own and unmapped when freed (`machine.MMAP_THRESHOLD`)."""

    def mapped(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", MAPPED_SCRIPT, mode], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return int(run.stdout)

    assert mapped("default") < 2**20 <= mapped("tuned")
