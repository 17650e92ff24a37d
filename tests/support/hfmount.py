"""A stand-in for a Storage Bucket mounted through hf-mount, which cannot run here (it needs FUSE and the Hub).

hf-mount's documented behaviour (README "Limitations", checked 2026-12): no file locking, last writer wins, and in
its default write mode an existing file cannot be opened for writing without truncating it, so appends fail. Inside
`mounted(folder)` every `open`/`os.open` of an existing file under `folder` for appending or for writing without
truncation raises the error hf-mount gives (EPERM); new files, whole rewrites and renames work as they do there.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path


class Refused(list):
    """The refused opens: (path, mode), so a test can say what was tried."""


def _refuses(folder: Path, path: object, writes: bool, appends: bool, truncates: bool) -> bool:
    if not isinstance(path, (str, os.PathLike)) or not (writes or appends):
        return False
    target = Path(os.fspath(path)).absolute()
    return target.is_relative_to(folder) and target.exists() and (appends or not truncates)


@contextlib.contextmanager
def mounted(folder: Path) -> Iterator[Refused]:
    folder = Path(folder).absolute()
    refused = Refused()
    real_open, real_os_open = builtins.open, os.open

    def checked_open(file, mode="r", *args, **kwargs):
        writes = any(c in mode for c in "wax+")
        if _refuses(folder, file, writes, "a" in mode, "w" in mode):
            refused.append((str(file), mode))
            raise PermissionError(errno.EPERM, "hf-mount: an existing file cannot be reopened for writing", str(file))
        return real_open(file, mode, *args, **kwargs)

    def checked_os_open(path, flags, *args, **kwargs):
        writes = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if _refuses(folder, path, writes, bool(flags & os.O_APPEND), bool(flags & os.O_TRUNC)):
            refused.append((str(path), flags))
            raise PermissionError(errno.EPERM, "hf-mount: an existing file cannot be reopened for writing", str(path))
        return real_os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = checked_open
    os.open = checked_os_open
    try:
        yield refused
    finally:
        builtins.open = io.open = real_open
        os.open = real_os_open
