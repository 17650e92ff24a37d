"""`python -m bear_classifier.batch.classify --engine ray`: the local engine's rows, computed on a Ray cluster.

Ray Data does the distributing: `read_binary_files` reads the photos (local paths, or object storage
such as s3:// and gs:// through pyarrow's file systems), and `map_batches` runs `PhotoClassifier` over
an actor pool, each actor loading the model once, as the app does (`serving.load`), and passing a batch
of photos through the app's gate and predictor. Ray schedules the work, retries failed tasks, restarts
dead actors and streams the rows back to the driver, which writes them as the local engine does.
`ray.init()` joins the cluster at RAY_ADDRESS, or starts a local Ray. Ray is an optional extra
(requirements-scale.txt); on a cluster every node needs the same install and the model: the committed
model.pkl at the same path, or a Hub repo pinned to a commit (--model-repo/--revision).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bear_classifier.batch.classify_common import UsageError, checked_bytes, is_uri, load_predictor, read_file
from bear_classifier.batch.results import Row, arrow_schema, row
from bear_classifier.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

INSTALL = "pip install -r requirements-scale.txt"


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed here: {INSTALL}") from None
    return ray


def vocab(settings: Settings) -> list[str]:
    """The model's classes, read from its card: the driver writes the columns but never loads the model."""
    from bear_classifier import serving
    from bear_classifier.model import card

    return card.read(serving.model_files(settings)[1]).vocab


class PhotoClassifier:
    """One Ray actor: the model, loaded once; then batches of files' bytes in, rows out."""

    def __init__(self, settings: Settings):
        self.predictor = load_predictor(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa

        results = self.predictor.predict_batch([checked_bytes(data) for data in batch["bytes"]])
        vocab = self.predictor.vocab
        rows = [row(str(path), result, vocab) for path, result in zip(batch["path"], results)]
        return pa.Table.from_pylist(rows, schema=arrow_schema(vocab))


def ray_rows(
    files: Sequence[str], settings: Settings, workers: int | None = None, skip: frozenset[str] = frozenset()
) -> Iterator[list[Row]]:
    """Rows for `files` (in no particular order), from `workers` actors (default: one per CPU of the
    cluster). `skip`: paths that already have a row, for the photos found under object-storage
    prefixes (local ones are listed beforehand)."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(logging_level=logging.WARNING)  # RAY_ADDRESS when set, else a Ray on this machine
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our progress bar and summary say it
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        # Local files Ray could not open would fail the whole run: they get their error row here instead.
        readable = [f for f in files if is_uri(f) or (Path(f).is_file() and os.access(f, os.R_OK))]
        unreadable = set(files) - set(readable)
        if unreadable:
            classes = vocab(settings)
            yield [row(f, read_file(f), classes) for f in files if f in unreadable]
        if not readable:
            return
        # Reading is I/O: at one CPU per read task, actors holding every CPU left the reads waiting forever.
        photos = ray.data.read_binary_files(readable, include_paths=True, num_cpus=0)
        if skip:
            photos = photos.filter(lambda photo: photo["path"] not in skip)
        rows = photos.map_batches(
            PhotoClassifier,
            fn_constructor_args=(settings,),
            batch_size=settings.max_batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers or max(1, int(ray.cluster_resources().get("CPU", 1)))),
            num_cpus=1,
        )
        for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield batch.to_pylist()
    finally:
        if started_here:
            ray.shutdown()
