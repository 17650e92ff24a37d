"""Files, whatever they hold: their SHA-256, and a new version written so that no reader ever sees half of it.

Model files, graphs, cached weights, the served record, visitors' photos and review flags all go through here: one
hash (what model cards record, and what the app remembers answers by) and one way to replace a file."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"
"""The end of a file's name while it is being written (the review folder's sync skips such files)."""


def sha256(path: str | Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` to write its new version to, renamed onto `target` when the block ends
    without an error (another process, or hf-mount, sees the old file or the new one, never half of one; nothing is
    reopened or appended to), and removed when it fails. Each process and thread writes under a name of its own."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}{PARTIAL}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
