"""The batch command's own pipeline at several batch sizes: which one to ship (`classify.BATCH_SIZE`).

`bench.floor` times the forward passes alone. Here the whole of `classify.local_rows` runs (decoder workers, the
predictor's inference thread, the rows), on the same photos at each batch size in turn, round after round in one
process, so that a change in load hits every size alike. Start-up is left out: it does not depend on the batch size.

    python -m bench.batch_sizes                 # about 2 minutes on 2 idle cores; writes runs/batch_sizes.md
"""

from __future__ import annotations

import argparse
import statistics
import time

from bear_classifier.batch import classify
from bear_classifier.batch.classify_common import load_predictor
from bear_classifier.settings import ROOT, Settings
from bench import measured_load, write_table
from bench.collections import collection

OUT = ROOT / "runs" / "batch_sizes.md"


def rate(files: list[str], predictor, batch: int, workers: int, settings: Settings) -> tuple[float, float]:
    """(photos/s, seconds the model waited for decoded photos) of one pass over `files` at `batch`."""
    predictor.max_batch_size = batch
    summary = classify.Summary()
    start = time.perf_counter()
    for _ in classify.local_rows(files, predictor, workers, settings.budget, summary):
        pass
    return len(files) / (time.perf_counter() - start), summary.model_waited_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_sizes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    predictor = load_predictor(settings)
    files = collection(args.photos)
    workers = classify.default_workers()
    rate(files[: 2 * max(args.sizes)], predictor, max(args.sizes), workers, settings)  # warm-up
    runs: dict[int, list[tuple[float, float]]] = {size: [] for size in args.sizes}
    with measured_load() as load:
        for _ in range(args.rounds):
            for size in args.sizes:
                runs[size].append(rate(files, predictor, size, workers, settings))
    lines = [
        f"**`classify.local_rows` at each batch size**: {len(files)} photos, {workers} decoder workers, "
        f"{args.rounds} rounds interleaved (median; `classify.BATCH_SIZE` is {classify.BATCH_SIZE})",
        "",
        "| batch size | photos/s | model waited for decoded photos, s |",
        "|---|---|---|",
    ]
    for size, results in runs.items():
        photos_per_s = statistics.median(r for r, _ in results)
        waited = statistics.median(w for _, w in results)
        lines.append(f"| {size} | {photos_per_s:.1f} | {waited:.1f} |")
    write_table(lines, OUT, [load])


if __name__ == "__main__":
    main()
