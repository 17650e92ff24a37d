"""Human in the loop: users flag wrong answers, people review them, the model learns from them.

The "Wrong?" buttons store the photo, the model's answer and the user's correction in a review folder: one
file per flag, `flags/<time>-<sha256>.json` and `images/<sha256>.jpg`, each written under a temporary name and
renamed into place, never appended to or rewritten. A Storage Bucket mounted at /data goes through hf-mount, which
has no file locking ("last writer wins") and refuses to reopen an existing file for writing without truncating
it: a shared table that every flag appends to would fail there, and a half-written file would be synced. Only a prediction this server answered in the caller's own Gradio session
can be flagged: the photo is the server's copy of that upload and the answer is the server's record, so
a caller can neither copy server files in nor write made-up rows. Flags are limited per client address
(`clients.Quotas`, not per session: a caller chooses its session), de-duplicated by content, and the folder
is capped in bytes: once full, new flags are refused (the reviewed ones are the valuable ones; nothing is
dropped silently); one client can fill at most `CLIENT_SHARE` of it, and its last `RESERVE` takes only each
client's first flag. The photo is re-encoded outside any
lock (by a decoder worker in the app), so a slow photo never holds up a prediction's `remember()`. On a Space, mount a Storage Bucket at
/data or set BEAR_FEEDBACK_REPO to sync the folder to a private Hub dataset: a Space's own disk is wiped
on restart. `train.fine_tune_on_reviews` then continues training the shipped model on the corrected photos.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import LocalContext

from bear_classifier import files, page
from bear_classifier.model.decoding import review_jpeg
from bear_classifier.model.images import ImageError
from bear_classifier.settings import Rates
from bear_classifier.web import clients

NOT_A_CLASS = (page.NONE_OF_THESE, "not a bear")
"""Corrections that name no class ("not a bear": flags stored before the subject became data): no training photo."""
PARTIAL = ".partial"
"""The suffix of a file still being written (renamed away when whole)."""
REVIEW_SIDE = 1024
"""Flagged photos are stored re-encoded, at most this many pixels a side: enough to retrain on, a fraction
of an upload's size, and without the EXIF block (a phone photo's GPS position)."""
CLIENT_SHARE = 0.1
"""The most of the review folder's capacity one client address can fill: the rest stays for everyone else."""
ROW_BYTES = 200
"""About what a flag's JSON row takes beside its photo."""
RESERVE = 0.25
"""The last part of the review folder, kept for the first flag of each client: addresses that flag junk photos
again and again cannot keep the next honest visitor's first flag out."""


class FlagRefused(ValueError):
    """A flag that is not stored; the message says why."""


@dataclass
class _Answered:
    path: str
    details: dict[str, Any]
    probabilities: dict[str, float]


class ReviewLog(gr.FlaggingCallback):
    """Gradio's flagging callback, trusting nothing the caller sends but the button pressed."""

    def __init__(
        self,
        hub_repo: str | None = None,
        *,
        max_bytes: int = 500 * 2**20,
        quotas: clients.Quotas | None = None,
        trust_forwarded: bool = False,
        review_copy: Callable[[str, int, str], bytes] | None = None,
        sessions_remembered: int = 10_000,
    ):
        """`quotas`: each client's flags (default `Rates()`); `review_copy(path, side, client)`: the
        re-encoded photo (default: decoded in this process)."""
        self.hub_repo = hub_repo
        self.max_bytes = max_bytes
        self.quotas = quotas or clients.Quotas(Rates())
        self.trust_forwarded = trust_forwarded
        self.review_copy = review_copy or (lambda path, side, client: review_jpeg(path, side))
        self.sessions_remembered = sessions_remembered
        self.scheduler = None
        self._answered: OrderedDict[str, _Answered] = OrderedDict()
        self._client_bytes: Counter[str] = Counter()
        self._client_flags: Counter[str] = Counter()
        self._lock = threading.Lock()

    def setup(self, components: Any, flagging_dir: str | Path) -> None:
        self.folder = Path(flagging_dir)
        for part in ("images", "flags"):
            (self.folder / part).mkdir(parents=True, exist_ok=True)
        self._stored = {row["sha256"] for row in flags(self.folder)}
        self._bytes = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())
        if self.hub_repo:
            from huggingface_hub import CommitScheduler

            # private=True: flagged photos are visitors' photos, never a public dataset by default.
            self.scheduler = CommitScheduler(
                repo_id=self.hub_repo,
                repo_type="dataset",
                folder_path=self.folder,
                every=5,
                private=True,
                ignore_patterns=[f"*{files.PARTIAL}"],  # a file being written is never synced
            )

    def remember(
        self,
        request: gr.Request | None,
        path: str | ImageError,
        probabilities: Mapping[str, float] | None,
        details: Mapping[str, Any],
    ) -> None:
        """Record the answer given to this visitor's session for the uploaded photo at `path`: the only
        photo and answer a flag from that session may refer to. `probabilities`: per class, None when the
        upload was refused; `details`: the answer's label, confidence and out_of_domain."""
        session = getattr(request, "session_hash", None)
        if not session or probabilities is None or isinstance(path, ImageError):
            return
        with self._lock:
            self._answered[session] = _Answered(str(Path(path).resolve()), dict(details), dict(probabilities))
            self._answered.move_to_end(session)
            while len(self._answered) > self.sessions_remembered:
                self._answered.popitem(last=False)

    def flag(self, flag_data: list[Any], flag_option: str | None = None, username: str | None = None) -> int:
        request = LocalContext.request.get(None)  # Gradio's FlagMethod passes no session: read it from the call
        sent = flag_data[0] if flag_data else None
        sent_path = sent.get("path") if isinstance(sent, dict) else getattr(sent, "path", None)
        client = clients.of_request(request, self.trust_forwarded)
        return self.flag_answer(getattr(request, "session_hash", None), sent_path, flag_option, client)

    def flag_answer(self, session: str | None, sent_path: str | None, correction: str | None, client: str = "") -> int:
        """Store the correction of the answer this server gave `session` for the photo at `sent_path`, charged
        to `client`'s share; returns the number of stored flags."""
        with self._lock:
            answered = self._answered.get(session or "")
        if answered is None or not sent_path or str(Path(sent_path).resolve()) != answered.path:
            raise FlagRefused(page.FLAG_NOT_ANSWERED)
        if not correction:
            raise FlagRefused(page.FLAG_NO_CORRECTION)
        try:
            digest = files.sha256(answered.path)
        except OSError:
            raise FlagRefused(page.FLAG_GONE) from None
        if digest in self._stored:
            return len(self._stored)  # flagged before: one copy is enough
        if not self.quotas.spend("flag", client):
            raise FlagRefused(page.FLAG_RATE.format(flags_per_hour=self.quotas.rates.flags_per_hour))
        try:
            jpeg = self.review_copy(answered.path, REVIEW_SIDE, client)  # slow: outside the lock
        except ImageError as e:
            raise FlagRefused(str(e)) from e
        with self._lock:
            if digest in self._stored:
                return len(self._stored)
            if self._client_bytes[client] + len(jpeg) > CLIENT_SHARE * self.max_bytes:
                raise FlagRefused(page.FLAG_CLIENT_FULL)
            first = not self._client_flags[client]
            if self._bytes + len(jpeg) > self.max_bytes * (1 if first else 1 - RESERVE):
                raise FlagRefused(page.FLAG_FOLDER_FULL if first else page.FLAG_NEARLY_FULL)
            self._count(client, digest, len(jpeg), +1)  # counted before the write, so that no twin passes the checks
        # Written outside the lock: every prediction takes it (`remember`), and a mounted bucket can be slow.
        try:
            self._store(digest, jpeg, correction, answered)
        except BaseException:
            with self._lock:
                self._count(client, digest, len(jpeg), -1)
            raise
        return len(self._stored)

    def _count(self, client: str, digest: str, size: int, sign: int) -> None:
        """Under the lock: count one stored flag of `size` bytes (sign 1), or take it back (-1)."""
        self._client_bytes[client] += sign * size
        self._client_flags[client] += sign
        self._bytes += sign * (size + ROW_BYTES)
        (self._stored.add if sign > 0 else self._stored.discard)(digest)

    def _store(self, digest: str, jpeg: bytes, correction: str, answered: _Answered) -> None:
        image = Path("images") / f"{digest[:32]}.jpg"
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "image": image.as_posix(),
            "correction": correction,
            "label": answered.details.get("label"),
            "confidence": answered.details.get("confidence"),
            "out_of_domain": answered.details.get("out_of_domain"),
            "probabilities": answered.probabilities,
            "sha256": digest,
        }
        flag = Path("flags") / f"{time.time_ns()}-{digest[:32]}.json"
        # Hold the scheduler's lock so a sync never sees a photo without its flag.
        with self.scheduler.lock if self.scheduler else nullcontext():
            _write_new(self.folder / image, jpeg)
            try:
                _write_new(self.folder / flag, json.dumps(row).encode())
            except BaseException:
                (self.folder / image).unlink(missing_ok=True)  # a photo without its flag is nobody's
                raise


def _write_new(path: Path, content: bytes) -> None:
    """`content` as a new file at `path` (on hf-mount a rename is how a finished file appears)."""
    with files.replacing(path) as partial:
        partial.write_bytes(content)


def flags(folder: Path) -> list[dict[str, Any]]:
    """Every flag stored in `folder`, oldest first (a file each: `_store`)."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted((Path(folder) / "flags").glob("*.json"))]


def reviewed_images(folder: Path) -> list[tuple[Path, str]]:
    """(photo, corrected label) for every flag in `folder`, leaving out those that name no class."""
    return [
        (Path(folder) / row["image"], row["correction"])
        for row in flags(folder)
        if row["correction"] not in NOT_A_CLASS and (Path(folder) / row["image"]).is_file()
    ]
