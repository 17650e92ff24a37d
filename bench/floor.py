"""The floor: how many photos per second the served graphs classify when nothing else is in the way.

The Predictor that `python -m bear_classifier.batch.classify` loads (`classify_common.load_predictor`, as the app loads
it) runs one or two passes per photo: its `network` (the answer) and, when the guard reads another size, its guard
network. Here each pass is fed inputs already in memory, made once from real photos through the predictor's own
transforms, at batch sizes 1, 8, 32 and 64, on the threads the predictor gives them (one per core), the batch
sizes interleaved round by round so a change in load hits them alike. A photo's floor is the time of every pass
it needs: no decoding, no resizing, no Python per photo. Whatever graphs the predictor loads are what is timed, and
the table names their files (`Predictor.graphs`).

    python -m bench.floor               # about a minute on 2 idle cores; writes runs/floor.md
    python -m bench.floor --rounds 8    # steadier
    python -m bench.floor --int8 runs/latest   # and the int8 graphs `quantize` made there, interleaved with it
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path

import torch

from bear_classifier.settings import ROOT, Settings
from bench import Load, measured_load, write_table

BATCH_SIZES = (1, 8, 32, 64)
OUT = ROOT / "runs" / "floor.md"


@dataclass
class Pass:
    graph: str
    """The graph file's name (`Predictor.graphs`), or what runs where there is none (the PyTorch backend)."""
    side: int
    run: Callable[[torch.Tensor], object]
    inputs: torch.Tensor


@dataclass
class Floor:
    passes: list[Pass]
    ms: dict[int, list[list[float]]]
    """Per batch size, per pass: the milliseconds of each call."""
    load: Load
    threads: int

    def pass_ms(self, batch: int) -> list[float]:
        return [statistics.median(calls) for calls in self.ms[batch]]

    def rate(self, batch: int) -> float:
        """Photos per second at `batch`: every pass a photo needs, at the median time of each."""
        return batch * 1000 / sum(self.pass_ms(batch))

    @property
    def best(self) -> int:
        return max(self.ms, key=self.rate)

    def table(self) -> list[str]:
        names = [f"{n}. `{p.graph}` ({p.side} px)" for n, p in enumerate(self.passes, 1)]
        lines = [
            f"**Floor: forward passes only, inputs in memory, {self.threads} threads per pass.** A photo needs "
            f"{len(self.passes)} pass(es): {'; '.join(names)}.",
            "",
            "| batch | "
            + " | ".join(f"pass {n} ms per batch" for n in range(1, len(self.passes) + 1))
            + " | ms per photo | photos/s | calls per pass |",
            "|---|" + "---|" * (len(self.passes) + 3),
        ]
        for batch in self.ms:
            ms = self.pass_ms(batch)
            mark = " (best)" if batch == self.best else ""
            lines.append(
                f"| {batch}{mark} | "
                + " | ".join(f"{m:.1f}" for m in ms)
                + f" | {sum(ms) / batch:.2f} | {self.rate(batch):.1f} | {len(self.ms[batch][0])} |"
            )
        return lines

    def as_dict(self) -> dict:
        rates = {str(b): self.rate(b) for b in self.ms}
        return {"best_batch": self.best, "photos_per_s": self.rate(self.best), "rates": rates, **self.load.as_dict()}


def photos(n: int) -> list[str]:
    """`n` photos of `bench.collections`' collection (repeated where it holds fewer)."""
    from bench.collections import collection

    return list(islice(cycle(collection()), n))


def passes(predictor, paths: list[str]) -> list[Pass]:
    """Each pass the predictor runs per photo, with its inputs for `paths` made as the predictor makes them."""
    from bear_classifier.model.images import ImageError, open_image

    pictures = []
    for path in paths:
        try:
            pictures.append(open_image(path))
        except ImageError:
            continue  # a file the gate refuses never reaches a pass
    from bear_classifier.model.predictor import OnnxNetwork, int8_name

    def name(size: int, guard: bool, network) -> str:
        if not isinstance(network, OnnxNetwork):
            return "PyTorch network (no graph file)"
        return int8_name(size, guard)  # a graph kept nowhere: the int8 one beside model.pkl (`int8_predictor`)

    names = predictor.graphs or [name(size, guard, network) for size, guard, _, network in predictor.passes()]
    return [
        Pass(name, size, network, transform(pictures))
        for name, (size, _, transform, network) in zip(names, predictor.passes())
    ]


def int8_predictor(run: Path):
    """The Predictor of `run`'s model.pkl with the int8 graphs beside it (`quantize`, made whether or not they serve)
    and the guard's threshold its card's comparison fitted for them."""
    from bear_classifier.model import card, modelfile
    from bear_classifier.model.predictor import Int8Graphs, Predictor

    facts = card.read(run / "model_card.md")
    learn = modelfile.load(run / "model.pkl", expected_sha256=facts.sha256)
    return Predictor(learn, int8=Int8Graphs(run, facts.int8["int8"]["threshold"]))


def measure(rounds: int = 4, settings: Settings | None = None, int8: Path | None = None) -> list[Floor]:
    """The floor of the model the batch command loads, at every batch size of `BATCH_SIZES`; with `int8` (a training
    run's folder), that of its int8 graphs too, interleaved with it call by call."""
    from bear_classifier.batch.classify_common import load_predictor

    predictors = [load_predictor(settings or Settings.from_env())] + ([int8_predictor(int8)] if int8 else [])
    paths = photos(max(BATCH_SIZES))
    found = [passes(predictor, paths) for predictor in predictors]
    ms = [{b: [[] for _ in steps] for b in BATCH_SIZES} for steps in found]
    with measured_load() as load, torch.inference_mode():
        for round_ in range(rounds + 1):  # the first round warms up (allocations, kernel choice): not kept
            for batch in BATCH_SIZES:
                for _ in range(max(BATCH_SIZES) // batch):  # every batch size classifies as many photos per round
                    for steps, kept in zip(found, ms):
                        for n, step in enumerate(steps):
                            inputs = step.inputs[:batch]
                            start = time.perf_counter()
                            step.run(inputs)
                            if round_:
                                kept[batch][n].append((time.perf_counter() - start) * 1000)
    return [Floor(steps, kept, load, torch.get_num_threads()) for steps, kept in zip(found, ms)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds kept (each: 64 photos at every batch size)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    parser.add_argument("--int8", type=Path, help="a training run's folder: its int8 graphs' floor too, interleaved")
    args = parser.parse_args(argv)
    floors = measure(args.rounds, int8=args.int8)
    write_table([line for floor in floors for line in [*floor.table(), ""]], args.out, [floors[0].load])
    if args.json:
        print("RESULT " + json.dumps(floors[0].as_dict()))
    return floors[0].best


if __name__ == "__main__":
    print(f"best batch size: {main()}")
