"""Classify a photo collection: `python -m bear_classifier.batch.classify PATH... --out results.csv`.

Folders (walked for image files), globs and files in; a row per photo out (`results`), with a progress
bar, and a summary at the end. Photos go through the app's own gate and model (`images.open_image`,
`serving.load`, `Predictor.predict_batch`), so a row says what the app would answer for that photo.
Locally, the app's decoder workers (`decoding.DecoderPool`: each photo under the app's CPU and memory budget,
handed back at the network's size) decode while the predictor runs forward passes on the photos already decoded:
a file too large or too slow to decode becomes an error row and the run goes on. A file whose bytes were already
answered in this run (a copy under another name) gets that answer again, by its SHA-256, without a decode or a
forward pass. `--engine ray`
(`classify_ray`) does the same work on a Ray cluster.

A folder is searched without following symlinks that lead out of it: a link to /etc/shadow in a collection
is not a photo of it. torch and fastai are imported only where the model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from bear_classifier.batch import classify_ray
from bear_classifier.batch.classify_common import UsageError, is_uri, load_predictor
from bear_classifier.batch.results import ResultsError, ResultsFile, Row, check_out, done_paths, row
from bear_classifier.files import sha256
from bear_classifier.model.decoding import Budget, DecoderPool, NotThePhoto
from bear_classifier.model.images import MAX_FILE_BYTES, ImageError
from bear_classifier.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bear_classifier.model.predictor import Prediction, Predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".mpo"}
"""What a folder is searched for; a file named on the command line is read whatever its name."""


def photo_paths(arguments: Iterable[str]) -> list[str]:
    """Every photo the arguments name, in order, each once: folders (recursively, image files only, never a
    symlink that leads out of the folder), globs (`**` too) and files; URIs are passed on as they are."""
    found: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if is_uri(argument) or path.is_file():
            found.append(argument)
        elif path.is_dir():
            root = path.resolve()
            found += sorted(
                str(p)
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve().is_relative_to(root)
            )
        elif any(c in argument for c in "*?["):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise UsageError(f"{argument} matches no file.")
            found += photo_paths(matches)
        else:
            raise UsageError(f"{argument}: no such file or folder.")
    return list(dict.fromkeys(found))


BATCH_SIZE = 1
"""Photos per forward pass. Measured on 2 idle cores with the shipped model (BENCHMARKS.md, "The batch command at
each batch size", `python -m bench.batch_sizes`, the whole command's pipeline interleaved in one process): one photo
per pass is the fastest, and more are slower per photo (25.3 photos/s; up to 4: 20.4, 16: 20.3, 64: 16.4), as the
forward passes alone are (`python -m bench.floor`: batches of 8 to 64 cost 55-60% more per photo than one at a time).
On 2 busy cores it went the other way (16 was 1.3x faster than 1), so measure again on other hardware."""
ROWS_AT_ONCE = 16
"""Rows handed to the writer and the progress bar together (and finished by Ctrl-C before stopping)."""
REMEMBERED = 100_000
"""Answers kept by the content's SHA-256 (under a KB each): a copy further back than this is classified again."""


class Answers:
    """Each photo's answer: decoded by a worker under the budgets, at the network's size, then classified; or, for
    bytes already answered in this run (a copy under another name), that same answer, without a decode or a
    forward pass. Keeps count of both, and of the time the model had no decoded photo to work on. The app's
    `serving.Answers` remembers uploads the same way, but as the page's answers (rounded, no quotas here); a row
    keeps the prediction itself, and a copy met while its first is still being classified waits for that answer."""

    def __init__(self, predictor: Predictor, decoders: DecoderPool):
        self.predictor, self.decoders = predictor, decoders
        self.repeats = 0
        self.model_waited_s = 0.0
        """Seconds with no photo in the model while photos were still coming: what decoding did not hide."""
        self._known: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._in_model = 0
        self._idle_since = time.perf_counter()

    def answer(self, path: str) -> Prediction | ImageError:
        try:
            size = os.stat(path).st_size
        except OSError as e:
            return ImageError(f"Could not read the file: {e.strerror}.")
        if size == 0:
            return ImageError("The file is empty.")
        if size > MAX_FILE_BYTES:  # refused by the gate unread: not hashed either (a sparse 64 GB file)
            return self._classified(path)
        try:
            digest = sha256(path)
        except OSError as e:
            return ImageError(f"Could not read the file: {e.strerror}.")
        with self._lock:
            if known := self._known.get(digest):
                self._known.move_to_end(digest)
                self.repeats += 1
            else:
                self._known[digest] = mine = Future()
                if len(self._known) > REMEMBERED:
                    self._known.popitem(last=False)
        if known:
            return known.result()  # the first copy's answer, once it has one
        try:
            result = self._classified(path)
        except BaseException as e:
            mine.set_exception(e)
            raise
        mine.set_result(result)
        if isinstance(result, NotThePhoto):  # about the machine now (no decoder started), not about these bytes
            with self._lock:
                self._known.pop(digest, None)
        return result

    def _classified(self, path: str) -> Prediction | ImageError:
        decoded = self.decoders.decode(path, client=path)  # one client per file: the workers decode side by side
        with self._lock:
            if not self._in_model:
                self.model_waited_s += time.perf_counter() - self._idle_since
            self._in_model += 1
        try:
            return self.predictor.predict_batch([decoded])[0]
        finally:
            with self._lock:
                self._in_model -= 1
                if not self._in_model:
                    self._idle_since = time.perf_counter()


def default_workers() -> int:
    """Decoder processes when --workers is not given: one per core."""
    return os.cpu_count() or 1


def local_rows(
    files: Sequence[str], predictor: Predictor, workers: int, budget: Budget, summary: Summary | None = None
) -> Iterator[list[Row]]:
    """Rows in input order, `ROWS_AT_ONCE` at a time. Each photo is decoded by one of `workers` decoder processes and
    handed to the predictor as soon as it is ready (its inference thread batches what is waiting, up to
    `predictor.max_batch_size`), so the model never waits for a whole batch to decode, nor for rows to be written.
    `summary`: gets the repeats and the time the model waited for decoded photos."""
    # Photos in flight at once, each on a thread of its own that waits for a worker, then for the model: enough that
    # while the writer waits for the oldest rows, every worker keeps decoding and the model has a batch waiting.
    # Decoded photos are a few hundred KB each, at the network's size.
    ahead = 2 * max(ROWS_AT_ONCE, predictor.max_batch_size) + 2 * workers
    answers = Answers(predictor, predictor.decoder_pool(workers, budget))
    with ThreadPoolExecutor(ahead) as pool:
        pending: deque[tuple[str, Future]] = deque()
        todo = iter(files)
        try:
            while True:
                for path in todo:
                    pending.append((path, pool.submit(answers.answer, path)))
                    if len(pending) >= ahead:
                        break
                if not pending:
                    return
                chunk = [pending.popleft() for _ in range(min(ROWS_AT_ONCE, len(pending)))]
                rows = [row(path, done.result(), predictor.vocab) for path, done in chunk]
                if summary is not None:
                    summary.repeats, summary.model_waited_s = answers.repeats, answers.model_waited_s
                yield rows
        finally:
            pool.shutdown(cancel_futures=True)
            answers.decoders.close()


@dataclass
class Summary:
    """What a run did: per label (photos the guard let through), flagged, refused, and how fast."""

    labels: Counter = field(default_factory=Counter)
    flagged: int = 0
    refused: int = 0
    skipped: int = 0
    repeats: int = 0
    """Photos whose bytes were already answered in this run: the same row, without a decode or a forward pass."""
    model_waited_s: float = 0.0
    """Seconds the model had no decoded photo to work on (local engine)."""
    seconds: float = 0.0
    """From the first photo handed to the engine to the last row written (model loading excluded)."""
    first_rows_s: float = 0.0
    """When the first rows came back (for Ray: starting the actors and loading the model in each)."""
    interrupted: bool = False

    @property
    def photos(self) -> int:
        return sum(self.labels.values()) + self.flagged + self.refused

    @property
    def rate(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0

    def add(self, rows: Iterable[Row]) -> None:
        for r in rows:
            if r["error"] is not None:
                self.refused += 1
            elif r["out_of_domain"]:
                self.flagged += 1
            else:
                self.labels[r["label"]] += 1

    def text(self) -> str:
        labels = ", ".join(f"{label} {n}" for label, n in sorted(self.labels.items())) or "none"
        skipped = f"; {self.skipped} skipped (already in the output)" if self.skipped else ""
        repeats = f"; {self.repeats} answered from an earlier copy of the same bytes" if self.repeats else ""
        waited = f" The model waited {self.model_waited_s:.1f} s for decoded photos." if self.model_waited_s else ""
        return (
            f"{self.photos} photos in {self.seconds:.1f} s ({self.rate:.3g} photos/s){skipped}{repeats}.{waited}\n"
            f"Per label: {labels}. Flagged as unlike the training photos: {self.flagged}. "
            f"Refused (not readable as an image): {self.refused}."
        )


def run(
    files: Sequence[str],
    out: Path,
    settings: Settings,
    engine: str = "local",
    workers: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Summary:
    """Classify `files` into `out`; the first Ctrl-C finishes the batch in hand, closes `out` (a
    valid file that `--resume` continues) and returns a summary marked `interrupted`."""
    check_out(out, resume)
    if engine == "ray":
        vocab = classify_ray.vocab(settings)
    elif any(is_uri(f) for f in files):
        raise UsageError("Reading from object storage (a URI) needs --engine ray.")
    else:
        predictor = load_predictor(settings)
        predictor.max_batch_size = BATCH_SIZE  # its own predictor: the app's batches are for concurrent visitors
        vocab = predictor.vocab
    summary = Summary()
    done = done_paths(out, vocab) if resume else set()
    todo = [f for f in files if f not in done]
    summary.skipped = len(files) - len(todo)
    results = ResultsFile(out, vocab, resume)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    start = time.perf_counter()
    try:
        rows = (
            classify_ray.ray_rows(todo, settings, workers, skip=frozenset(done))
            if engine == "ray"
            else local_rows(todo, predictor, workers or default_workers(), settings.budget, summary)
        )
        total = None if any(is_uri(f) for f in todo) else len(todo)  # a prefix holds an unknown number
        with tqdm(total=total, unit="photo", disable=not progress, file=sys.stderr) as bar:
            for batch in rows:
                summary.first_rows_s = summary.first_rows_s or time.perf_counter() - start
                results.write(batch)
                summary.add(batch)
                bar.update(len(batch))
                if stop.is_set():
                    summary.interrupted = True
                    rows.close()
                    break
    finally:
        signal.signal(signal.SIGINT, previous)
        results.close()
        summary.seconds = time.perf_counter() - start
    return summary


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.batch.classify",
        description="Classify every photo in folders, globs and files; one row per photo in --out.",
        epilog="Each photo is decoded by a worker process at the size the network reads and handed to the model as "
        f"soon as it is ready; a forward pass takes up to {BATCH_SIZE} photos, as many as are waiting (python -m "
        "bench.batch_sizes measures the choice). A file whose bytes were already answered in this run (a copy under another name) gets the same "
        "row without a decode. Photos are decoded in full, as the app decodes them, so a row is the app's answer: "
        "JPEG draft decoding (decoding large JPEGs at a reduced size) changed no label and no out-of-domain flag, but "
        "probabilities by up to 0.010 and guard scores by up to 0.022 on 4000x3000 JPEGs, and decoded none of the 619 "
        "external photos smaller (BENCHMARKS.md, 'JPEG draft decoding in the batch command').",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        help="folders (searched for image files; symlinks that lead out of a folder are not followed), globs or "
        "files (read as named)",
    )
    parser.add_argument("--out", required=True, type=Path, help="results file: .csv, .jsonl or .parquet")
    parser.add_argument("--resume", action="store_true", help="keep the rows in --out; classify only the rest")
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="this machine, or a Ray cluster")
    parser.add_argument(
        "--workers",
        type=int,
        help="decoding processes, each photo under BEAR_DECODE_CPU_SECONDS and BEAR_DECODE_MEMORY_MB (default: one "
        "per core), or Ray actors (default: one per CPU of the cluster)",
    )
    parser.add_argument("--model-repo", help="Hub model repo to load model.pkl from (default: BEAR_MODEL_REPO)")
    parser.add_argument("--revision", help="the commit SHA to pin --model-repo to (default: BEAR_MODEL_REVISION)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from bear_classifier.model.modelfile import ModelFileError  # model.pkl missing, altered, or not loadable here
    from bear_classifier.ship.hub import HubError  # the Hub repo or revision cannot be used

    try:
        settings = Settings.from_env()
        settings = dataclasses.replace(
            settings,
            model_repo=args.model_repo or settings.model_repo,
            model_revision=args.revision or settings.model_revision,
        )
        summary = run(
            photo_paths(args.paths), args.out, settings, args.engine, args.workers, args.resume, not args.no_progress
        )
    except (UsageError, ResultsError, SettingsError, ModelFileError, HubError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.text())
    if summary.interrupted:
        print(f"Interrupted: {args.out} holds the rows written so far; run the same command with --resume to finish.")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
