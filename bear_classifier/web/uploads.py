"""Gradio's upload folder, bounded: small shares that evict, no orphaned temp files, every file deleted after its
lifetime.

Each upload that passes `limits.BodyLimits` is recorded here with its client and size, so the folder's size is a
running count (the event loop never walks the folder). One client holds at most `SHARE` of the folder: its next
upload evicts its own oldest files. When the folder is full, the heaviest holder's oldest files go first, so
clients filling it together evict each other, never an honest visitor's one photo. An upload never used in a
prediction lives `unused_ttl` seconds, one that was used the full lifetime.

Gradio's multipart parser writes each file part to a `tmp*` file in the folder's top level and renames it into
`<sha>/<name>` when the request succeeds. A part under another field name is never renamed, and a request
cut off (a dropped connection, our body cap) leaves its temp files behind; none of these are in Gradio's
tracked sets, so its `delete_cache` never deletes them (about 10 MB each). Here: while no upload is in
flight, no top-level file can belong to one, so every top-level file is deleted then (one `scandir` of the top
level, which reads no file's status); a sweep in a thread deletes every file past its lifetime, and top-level
files older than the longest an upload may take. When the app stops, the whole folder goes.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bear_classifier import page

UPLOAD_SECONDS = 120
"""The longest an upload request may stream (`limits.BodyLimits` cuts it off then): 10 MB at 0.7 Mbit/s."""
SHARE = 0.05
"""The most of the folder one client holds, its uploads in flight included: 50 MB (five large phone photos) of
the default 1,000 MB."""


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


@dataclass
class _Held:
    client: str
    size: int
    added: float
    used: bool = False


class UploadFolder:
    """`folder`: Gradio's upload folder; `keep`: paths never deleted (the examples Gradio cached at start-up);
    `ttl`: an upload's lifetime once a prediction used it, `unused_ttl` before that."""

    def __init__(
        self,
        folder: str | Path,
        max_bytes: int,
        ttl: int,
        keep: Callable[[], set[str]] = set,
        unused_ttl: int = 60,
        share: float = SHARE,
    ):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.unused_ttl = min(unused_ttl, ttl)
        self.keep = keep
        self.share = share
        self._held: OrderedDict[str, _Held] = OrderedDict()  # path -> its upload, oldest first
        self._client_bytes: Counter[str] = Counter()
        self._bytes = 0  # of the files in `_held`
        self._reserved = 0  # of the uploads in flight (what they may still write)
        self._client_reserved: Counter[str] = Counter()
        self._in_flight = 0
        self._lock = threading.Lock()

    def used_bytes(self) -> int:
        """Bytes held by uploads, and promised to those in flight."""
        return self._bytes + self._reserved

    @contextmanager
    def upload(self, client: str, size: int) -> Iterator[str | None]:
        """Around one upload request of at most `size` bytes from `client`: makes room (its own oldest files
        first, beyond its share; then the heaviest holder's oldest); yields None, or why there is no room for
        it. When the last upload in flight ends, its leftovers go."""
        with self._lock:
            refusal, evicted = self._make_room(client, size)
            reserved = 0 if refusal else size
            self._reserved += reserved
            self._client_reserved[client] += reserved
            self._in_flight += 1
        try:
            self._delete(evicted)
            yield refusal
        finally:
            with self._lock:
                self._reserved -= reserved
                self._client_reserved[client] -= reserved
                if not self._client_reserved[client]:
                    del self._client_reserved[client]
                self._in_flight -= 1
                if not self._in_flight:
                    self._delete_temp_files(older_than=0)

    def add(self, client: str, path: str) -> None:
        """Record a file that an upload of `client` stored (its size from one `stat`). An example's own file is not
        recorded: uploading an example's bytes under its name lands on the path Gradio cached it at, and recording
        it would let that client's share (or the sweep) delete the page's example for everyone."""
        try:
            size = os.stat(path).st_size
        except OSError:
            return
        key = str(Path(path).resolve())
        if key in self._kept():
            return
        with self._lock:
            if key in self._held:  # the same content and name again: one file, now the newest
                self._held[key].added = time.time()
                self._held.move_to_end(key)
                return
            self._held[key] = _Held(client, size, time.time())
            self._client_bytes[client] += size
            self._bytes += size

    def used(self, path: str) -> None:
        """A prediction read the file at `path`: it lives its full lifetime."""
        with self._lock:
            if (held := self._held.get(str(Path(path).resolve()))) is not None:
                held.used = True

    def sweep(self) -> None:
        """Delete every file past its lifetime, and temp files older than any upload can be."""
        now, keep = time.time(), self.keep()
        with self._lock:
            expired = [
                path
                for path, held in self._held.items()
                if now - held.added > (self.ttl if held.used else self.unused_ttl)
            ]
            for path in expired:
                self._forget(path)
        self._delete(expired)
        # Untracked files: an upload Gradio stored and then refused (400, so never recorded) is a leftover once no
        # upload can still be in flight; waiting the full lifetime let refused uploads fill the disk uncounted.
        for path, _, changed in self._files():
            if now - changed > UPLOAD_SECONDS + 30 and str(path) not in keep and str(path.resolve()) not in self._held:
                _remove(path)
        with self._lock:
            self._delete_temp_files(older_than=UPLOAD_SECONDS + 30)
        for directory in self.folder.iterdir() if self.folder.is_dir() else ():
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()

    def start(self) -> None:
        """Sweep in a background thread, often enough that nothing outlives its lifetime by much."""
        every = max(1, min(self.unused_ttl // 4, 60))

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

    def _make_room(self, client: str, size: int) -> tuple[str | None, list[str]]:
        """Under the lock: evict until `size` more bytes fit in `client`'s share and in the folder; or why not. The
        files evicted are forgotten here and deleted by the caller, after the lock."""
        share = self.share * self.max_bytes
        if self._client_reserved[client] + size > max(share, size):
            return page.MANY_AT_ONCE, []  # its uploads in flight alone fill its share
        if self._reserved + size > self.max_bytes:
            return page.UPLOADS_FULL, []  # in flight alone: nothing to evict makes room
        evicted = []
        while self._client_bytes[client] and self._client_bytes[client] + self._client_reserved[client] + size > share:
            evicted.append(self._forget(self._oldest_of(client)))
        while self._bytes and self.used_bytes() + size > self.max_bytes:
            heaviest = max(self._client_bytes, key=self._client_bytes.__getitem__)
            evicted.append(self._forget(self._oldest_of(heaviest)))
        return None, evicted

    def _oldest_of(self, client: str) -> str:
        return next(path for path, held in self._held.items() if held.client == client)

    def _kept(self) -> set[str]:
        return {str(Path(path).resolve()) for path in self.keep()}

    def _delete(self, paths: list[str]) -> None:
        """Delete files already forgotten, outside the lock: the sweep's thread and the uploads on the event loop need
        not wait for the disk. A new upload of the same bytes under the same name lands on the same path and may be
        recorded meanwhile, and then deleted here: it is forgotten again, so that no share counts a file that is gone
        (its visitor is told to upload it again)."""
        if not paths:  # the usual upload evicts nothing: no second turn of the lock for it
            return
        for path in paths:
            _remove(Path(path))
        with self._lock:
            for path in paths:
                if path in self._held and not os.path.lexists(path):
                    self._forget(path)

    def _forget(self, path: str) -> str:
        """Under the lock: no longer count the file at `path` (the caller deletes it after the lock)."""
        held = self._held.pop(path)
        self._client_bytes[held.client] -= held.size
        if not self._client_bytes[held.client]:
            del self._client_bytes[held.client]
        self._bytes -= held.size
        return path

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
    """Unlink `path`; a file that will not go (an error of a mounted bucket) stays for the next sweep to try again."""
    try:
        path.unlink()
    except OSError:
        pass
