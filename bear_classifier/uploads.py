"""Gradio's upload folder, bounded: a total cap, no orphaned temp files, every file deleted after its lifetime.

Gradio's multipart parser writes each file part to a `tmp*` file in the folder's top level and renames it into
`<sha>/<name>` when the request succeeds. A part under another field name is never renamed, and a request
cut off (a dropped connection, our body cap) leaves its temp files behind; none of these are in Gradio's
tracked sets, so its `delete_cache` never deletes them (about 10 MB each). Here: while no upload is in
flight, no top-level file can belong to one, so every top-level file is deleted then; a sweep deletes every
file (tracked or not) past its lifetime, and top-level files older than the longest an upload may take. When
the app stops, the whole folder goes.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

UPLOAD_SECONDS = 120
"""The longest an upload request may stream (`limits.BodyLimits` cuts it off then): 10 MB at 0.7 Mbit/s."""


def own_folder() -> Path:
    """Gradio's upload folder for this app: `GRADIO_TEMP_DIR` when set, else a new folder of its own (Gradio's
    default, /tmp/gradio, is shared by every Gradio app of this user, so it must not be deleted on exit). Call
    before gradio is imported: some of its modules read the variable then."""
    if not os.environ.get("GRADIO_TEMP_DIR"):
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="bear-classifier-uploads-")
    return Path(os.environ["GRADIO_TEMP_DIR"])


def stop_on_sigterm() -> None:
    """SIGTERM (a Space or a service manager stopping the app) stops it as Ctrl-C does: Gradio closes its
    server and `finally` blocks run, where Python's default would end the process on the spot."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


class UploadFolder:
    """`folder`: Gradio's upload folder; `keep`: paths never deleted (the examples Gradio cached at start-up)."""

    def __init__(self, folder: str | Path, max_bytes: int, ttl: int, keep: Callable[[], set[str]] = set):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.keep = keep
        self._in_flight = 0
        self._lock = threading.Lock()

    def used_bytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def has_room(self, size: int) -> bool:
        return self.used_bytes() + size <= self.max_bytes

    @contextmanager
    def upload(self) -> Iterator[None]:
        """Around one upload request: when the last one in flight ends, its leftovers go."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if not self._in_flight:
                    self._delete_temp_files(older_than=0)

    def sweep(self) -> None:
        """Delete every file past its lifetime, and temp files older than any upload can be."""
        now, keep = time.time(), self.keep()
        for path, _, changed in self._files():
            if now - changed > self.ttl and str(path) not in keep:
                _remove(path)
        with self._lock:
            self._delete_temp_files(older_than=UPLOAD_SECONDS + 30)
        for directory in self.folder.iterdir() if self.folder.is_dir() else ():
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()

    def start(self) -> None:
        """Sweep in a background thread, often enough that nothing outlives its lifetime by much."""
        every = max(1, min(self.ttl // 4, 60))

        def sweeping() -> None:
            while True:
                time.sleep(every)
                try:
                    self.sweep()
                except OSError:  # a file deleted under us: the next sweep sees the folder as it is
                    pass

        threading.Thread(target=sweeping, name="upload-sweep", daemon=True).start()

    def remove(self) -> None:
        """Delete the folder and everything in it: on exit, so that no visitor's photo outlives the app."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _delete_temp_files(self, older_than: float) -> None:
        now = time.time()
        with os.scandir(self.folder) if self.folder.is_dir() else _nothing() as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and now - entry.stat().st_ctime >= older_than:
                    _remove(Path(entry.path))

    def _files(self) -> Iterator[tuple[Path, int, float]]:
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root) / name
                try:
                    status = path.lstat()
                except FileNotFoundError:
                    continue
                yield path, status.st_size, status.st_ctime


@contextmanager
def _nothing() -> Iterator[list]:
    yield []


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
