"""Classify a photo collection: `python -m bear_classifier.classify PATH... --out results.csv`.

Folders (walked for image files), globs and files in; a row per photo out (`results`), with a progress
bar, and a summary at the end. Photos go through the app's own gate and model (`images.open_image`,
`serving.load`, `Predictor.predict_batch`), so a row says what the app would answer for that photo.
Locally, worker processes decode while the predictor runs batched forward passes on the decoded
pictures; `--engine ray` (`classify_ray`) does the same work on a Ray cluster.

The decoding workers are started with "spawn" (forking a process that runs ONNX Runtime's threads is
unsafe), which imports this module in each of them: torch and fastai are imported only where the model
is loaded, so a worker costs only numpy and Pillow.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from . import classify_ray
from .classify_common import UsageError, is_uri, load_predictor, read_file
from .images import ImageError, open_image
from .results import ResultsError, ResultsFile, Row, check_out, done_paths, row
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .predictor import Predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".mpo"}
"""What a folder is searched for; a file named on the command line is read whatever its name."""


def photo_paths(arguments: Iterable[str]) -> list[str]:
    """Every photo the arguments name, in order, each once: folders (recursively, image files only),
    globs (`**` too) and files; URIs are passed on as they are."""
    found: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if is_uri(argument) or path.is_file():
            found.append(argument)
        elif path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif any(c in argument for c in "*?["):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise UsageError(f"{argument} matches no file.")
            found += photo_paths(matches)
        else:
            raise UsageError(f"{argument}: no such file or folder.")
    return list(dict.fromkeys(found))


def read_photo(path: str, draft_size: int | None = None) -> np.ndarray | ImageError:
    """In a worker process: the file decoded by the app's gate, as an upright RGB array (the
    predictor takes it as it is, so the pixels and probabilities are the app's), or why not."""
    data = read_file(path)
    if isinstance(data, ImageError):
        return data
    try:
        return np.asarray(open_image(data, draft_size=draft_size))
    except ImageError as e:
        return e


def _ignore_interrupts() -> None:
    """Ctrl-C reaches the whole process group: the main process alone decides what it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def local_rows(files: Sequence[str], predictor: Predictor, workers: int) -> Iterator[list[Row]]:
    """Rows in input order, a batch (`predictor.max_batch_size` photos) at a time: `workers` processes
    decode ahead while the predictor runs the forward pass of the batch before."""
    # Decoded photos waiting for the predictor, at most this many: bounds memory (a 12 MP photo is 36 MB
    # decoded) while keeping every worker busy during a forward pass.
    ahead = 2 * predictor.max_batch_size + workers
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_interrupts) as pool:
        pending: deque[tuple[str, Future]] = deque()
        todo = iter(files)
        try:
            while True:
                for path in todo:
                    pending.append((path, pool.submit(read_photo, path, predictor.draft_size)))
                    if len(pending) >= ahead:
                        break
                if not pending:
                    return
                batch = [pending.popleft() for _ in range(min(predictor.max_batch_size, len(pending)))]
                decoded = [done.result() for _, done in batch]
                results = predictor.predict_batch(decoded)
                yield [row(path, result, predictor.vocab) for (path, _), result in zip(batch, results)]
        finally:
            pool.shutdown(cancel_futures=True)


@dataclass
class Summary:
    """What a run did: per label (photos the guard let through), flagged, refused, and how fast."""

    labels: Counter = field(default_factory=Counter)
    flagged: int = 0
    refused: int = 0
    skipped: int = 0
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
        return (
            f"{self.photos} photos in {self.seconds:.1f} s ({self.rate:.3g} photos/s){skipped}.\n"
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
            else local_rows(todo, predictor, workers or os.cpu_count() or 1)
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
        prog="python -m bear_classifier.classify",
        description="Classify every photo in folders, globs and files; one row per photo in --out.",
    )
    parser.add_argument("paths", nargs="+", help="folders (searched for image files), globs or files")
    parser.add_argument("--out", required=True, type=Path, help="results file: .csv, .jsonl or .parquet")
    parser.add_argument("--resume", action="store_true", help="keep the rows in --out; classify only the rest")
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="this machine, or a Ray cluster")
    parser.add_argument(
        "--workers",
        type=int,
        help="decoding processes (default: one per core), or Ray actors (default: one per CPU of the cluster)",
    )
    parser.add_argument("--model-repo", help="Hub model repo to load model.pkl from (default: BEAR_MODEL_REPO)")
    parser.add_argument("--revision", help="the commit SHA to pin --model-repo to (default: BEAR_MODEL_REVISION)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from .hub import HubError  # the Hub repo or revision cannot be used
    from .modelfile import ModelFileError  # model.pkl missing, altered, or not loadable here

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
