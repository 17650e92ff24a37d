"""A test run keeps its temporary files inside the clone, and removes them when it passes.

conftest.py imports this module before anything else: Gradio's client fixes its download folder from the
temp folder when it is imported. On import, the run gets `test-tmp/<pid>/tmp/` (gitignored) as the temp
folder of this process and, through TMPDIR, of every process it starts (the app, its decoder workers,
Chromium, the notebook's kernel); pytest's own temp folders (`tmp_path`) land there too. A run that passes
deletes its folder; a failed run's folder stays for a look until the next run starts. Ray alone gets a
short folder in the system temp folder (its socket paths are length-limited), removed at the end of the run.
The app's cache (`BEAR_CACHE`) is `test-tmp/cache/`, kept between runs.

`left_outside()` compares the system temp folder (and one level down) with its state at import: anything
new there was written by a process that ignored TMPDIR. On a shared machine other people's processes write
there too, so the suite reports such entries instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "test-tmp"
RUN = SCRATCH / str(os.getpid())
SYSTEM_TMP = Path(tempfile.gettempdir())
RAY_TMP = SYSTEM_TMP / f"bear-tests-{os.getpid()}-ray"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_ended_runs() -> None:
    """Folders of runs whose process has ended: a failure's files were kept until now."""
    for folder in SCRATCH.glob("*"):
        if folder.name.isdigit() and (folder == RUN or not _alive(int(folder.name))):
            shutil.rmtree(folder, ignore_errors=True)
    for folder in SYSTEM_TMP.glob("bear-tests-*-ray"):
        if not _alive(int(folder.name.split("-")[2])):
            shutil.rmtree(folder, ignore_errors=True)


def _entries() -> set[Path]:
    """The system temp folder's entries and those one level down: shared folders such as /tmp/gradio,
    /tmp/ray or /tmp/pytest-of-<user> already exist, what a run would leave appears inside them."""
    found = set()
    for entry in SYSTEM_TMP.iterdir():
        found.add(entry)
        if entry.is_dir() and not entry.is_symlink():
            with contextlib.suppress(OSError):  # another user's private folder
                found.update(entry.iterdir())
    return found


def _redirect() -> set[Path]:
    _remove_ended_runs()
    (RUN / "tmp").mkdir(parents=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(RUN / "tmp")
    # Ray's socket paths (its session folder + sockets/plasma_store: 66 characters more) must fit in 107 bytes,
    # which a folder inside a clone whose path is longer than about 20 characters would not.
    os.environ["RAY_TMPDIR"] = str(RAY_TMP)
    # The app's cache (converted pretrained weights, start-up verdicts and ONNX graphs of every model a test
    # exports) stays in the clone too, kept between runs: it is a cache, not a leftover.
    os.environ.setdefault("BEAR_CACHE", str(SCRATCH / "cache"))
    return _entries()


BEFORE = _redirect()


def left_outside() -> list[Path]:
    """Entries of the system temp folder (and one level down) that appeared during this run."""
    return sorted(_entries() - BEFORE)


def finish(passed: bool) -> None:
    """Remove Ray's folder, and this run's temp folder when the run passed."""
    shutil.rmtree(RAY_TMP, ignore_errors=True)
    if passed:
        shutil.rmtree(RUN, ignore_errors=True)
