"""int8 graphs for the served passes (issue 30): each pass's fp32 ONNX graph quantized statically by ONNX Runtime's own
tools, calibrated on training photos through that pass's validation transform, compared with the fp32 graphs photo by
photo, and shipped only where the choice rule would ship it (`choice.precision`: no worse on any figure of the
choosing photos, then speed).

    python -m bear_classifier.training.quantize runs/latest --data data/bears [--select ../shared/data/external]

That is training.ipynb's int8 cell, for a run that has finished: the int8 graphs go beside the run's model.pkl
(`predictor.int8_name`), and its model card is written again with the comparison and, when they ship, the graphs'
SHA-256s (the app serves exactly those files, or refuses to start). Give the run's own data folders: the
split is made again from them (its seed), and the selection half of `--select` compares.

How: QDQ format, int8 weights per output channel, uint8 activations, MinMax ranges over `CALIBRATION_PHOTOS`
training photos (the validation split and the choosing photos are never seen). The int8 candidate's guard keeps the
model's in-domain classes, and its threshold is fitted again the way the model's was (the same quantile of the
training photos' scores), on the scores the int8 graphs give (`int8_threshold`): the card records it. The stem convolution, the last 1x1
convolution and the heads (`KEEP_FP32`) stay fp32: with only the heads kept, the shipped model's int8 graphs answered
5 of the 173 selection-half bears differently (3 more wrong) and flagged 8 photos differently; with those kept too,
1 bear (now right) and 4 flags (BENCHMARKS.md, "int8 graphs").
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bear_classifier.model import card, modelfile
from bear_classifier.model.images import open_image
from bear_classifier.model.predictor import INT8_GLOB, Int8Graphs, Prediction, Predictor, int8_name
from bear_classifier.training import candidates, card_writer, choice, data, evaluate

CALIBRATION_PHOTOS = 64
"""Training photos whose activations set the int8 ranges: every k-th of the sorted training split."""
KEEP_FP32 = ("Gemm", "MatMul", "Softmax", "ReduceMean", "GlobalAveragePool")
"""Operator types left in fp32 (the heads: a few thousand multiply-adds, and the probabilities they make are what the
guard and the answer read), besides the first and the last convolution."""


def calibration_photos(train: Sequence[Path], n: int = CALIBRATION_PHOTOS) -> list[Path]:
    """`n` training photos spread over the sorted split (every class, deterministic)."""
    ordered = sorted(train)
    return ordered[:: max(1, len(ordered) // n)][:n]


def int8_graph(fp32: Path, inputs: Sequence[np.ndarray], out: Path) -> Path:
    """`fp32`'s graph quantized into `out`, its activation ranges read on `inputs` (batches, NCHW float32)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"  # shapes inferred and constants folded, as the tools advise
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        nodes = onnx.load(str(prepared)).graph.node
        convolutions = [n.name for n in nodes if n.op_type == "Conv"]
        kept = [n.name for n in nodes if n.op_type in KEEP_FP32] + convolutions[:1] + convolutions[-1:]
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=kept,
        )
    return out


def make(learn, calibration: Sequence[Path], folder: Path) -> dict[str, str]:
    """The int8 graph of every pass that `learn`'s served Predictor runs, written into `folder` under
    `predictor.int8_name`; returns {file name: SHA-256}."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Predictor(learn, backend="onnx", onnx_cache=Path(scratch) / "fp32")
        passes = list(zip(fp32.passes(), fp32.graphs))
        inputs: dict[str, list[np.ndarray]] = {name: [] for _, name in passes}
        for path in calibration:  # each photo decoded once for every pass, and not kept: phone photos are large
            picture = open_image(path)
            for (_, _, transform, _), name in passes:
                inputs[name].append(transform([picture]).numpy())
        made = {}
        for (size, guard, _, _), name in passes:
            out = int8_graph(Path(scratch) / name, inputs[name], folder / int8_name(size, guard))
            made[out.name] = hashlib.sha256(out.read_bytes()).hexdigest()
    return made


@dataclass(frozen=True)
class Comparison:
    """fp32 against int8, photo by photo, and what the rule ships."""

    fp32: choice.Candidate
    int8: choice.Candidate
    differing: dict[str, list[str]]
    """Photo -> how its int8 answer differs in label or flag (`candidates.differences`); validation and choosing
    photos. Every photo's probabilities differ a little: `max_gap` says how much."""
    max_gap: float
    """The largest difference of one class probability, over every photo compared."""
    ships: str
    """"int8" or "fp32"."""
    reason: str

    def to_dict(self) -> dict:
        """What the model card keeps: the two candidates, how many answers differ, the decision (no photo names)."""
        labels = sum(any(d.startswith("label") for d in found) for found in self.differing.values())
        flags = sum(any(d.startswith("flagged") for d in found) for found in self.differing.values())
        return {
            "fp32": self.fp32.to_dict(),
            "int8": self.int8.to_dict(),
            "labels_differ": labels,
            "flags_differ": flags,
            "photos": self.photos,
            "max_gap": self.max_gap,
            "ships": self.ships,
            "reason": self.reason,
        }

    @property
    def photos(self) -> int:
        """Photos compared: the choosing ones (in and out of domain) and validation."""
        return self.fp32.n + sum(n for _, n in self.fp32.out_of_domain.values()) + self.fp32.valid_n


def measured(predictor: Predictor, photos: candidates.Photos, name: str) -> tuple[choice.Candidate, dict]:
    """`predictor` as a candidate on the choosing photos and validation (its own guard and threshold), and its answers."""
    choosing = [p for paths in photos.in_domain.values() for p in paths]
    truth = {p: label for label, paths in photos.in_domain.items() for p in paths} | {
        p: p.parent.name for p in photos.valid
    }
    folders = {p: key for key, paths in photos.out_of_domain.items() for p in paths}
    every = list(dict.fromkeys([*choosing, *photos.valid, *folders]))
    answers = dict(zip(every, predictor.predict_batch(every)))

    def right(paths: list[Path]) -> int:
        return sum(isinstance(a := answers[p], Prediction) and a.label == truth[p] for p in paths)

    def flagged(paths: list[Path]) -> int:
        return sum(isinstance(a := answers[p], Prediction) and a.out_of_domain for p in paths)

    candidate = choice.Candidate(
        name=name,
        passes=len(predictor.passes()),
        share=0.0,
        zero_shot=False,
        right=right(choosing),
        n=len(choosing),
        flagged=flagged(choosing),
        out_of_domain={key: (flagged(paths), len(paths)) for key, paths in photos.out_of_domain.items()},
        valid_right=right(photos.valid),
        valid_n=len(photos.valid),
        guard="fitted on the training photos' scores under these graphs",
        threshold=predictor.guard.threshold if predictor.guard else 0.0,
    )
    return candidate, answers


def int8_threshold(learn, folder: Path, train: Sequence[Path]) -> float:
    """The guard's threshold on the int8 graphs in `folder`: its quantile of the training photos' scores under them,
    as `imagenet` fitted it on the fp32 network's (the same classes in domain; only the scores moved)."""
    int8 = Predictor(learn, int8=Int8Graphs(folder, threshold=0.0))
    if int8.guard is None:
        return 0.0
    size, _, transform, network = next(p for p in int8.passes() if p[1])  # the pass that gives ImageNet's output
    batches = [train[i : i + 32] for i in range(0, len(train), 32)]
    with torch.inference_mode():
        probabilities = torch.cat([network(transform([open_image(p) for p in batch]))[1] for batch in batches])
    return int8.guard.threshold_on(probabilities)


def compare(learn, folder: Path, photos: candidates.Photos) -> Comparison:
    """The exported learner's fp32 graphs against its int8 graphs in `folder` (the guard's threshold fitted again on
    the training photos' int8 scores, `int8_threshold`), on `photos`."""
    int8_graphs = Int8Graphs(folder, int8_threshold(learn, folder, photos.train))
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Predictor(learn, backend="onnx", onnx_cache=Path(scratch) / "fp32")
        int8 = Predictor(learn, onnx_cache=Path(scratch) / "int8", int8=int8_graphs)
        reference, left = measured(fp32, photos, "fp32 graphs")
        quantized, right = measured(int8, photos, "int8 graphs")
    differing, gap = {}, 0.0
    for photo, a in left.items():
        b = right[photo]
        found = [d for d in candidates.differences(a, b) if not d.startswith("probabilities")]
        if found:
            differing[str(photo)] = found
        if isinstance(a, Prediction) and isinstance(b, Prediction):
            gap = max(gap, *(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities))
    ships, reason = choice.precision(reference, quantized, photos.on)
    return Comparison(reference, quantized, differing, gap, ships, reason)


def quantize_run(
    run: Path,
    facts: card.TrainingFacts,
    data_dir: Path,
    select_dir: Path | None,
    seed: int = data.SEED,
    max_per_class: int | None = None,
) -> tuple[card.TrainingFacts, Comparison]:
    """training.ipynb's int8 cell for the run in `run` (its model.pkl exported, `facts` its card's): int8 graphs
    made, compared and written beside its model.pkl (any older ones removed). Returns the card's facts with the
    comparison and the graphs that serve (none when the fp32 ones do: `promote` and `hub.push` then leave them
    behind), and the comparison. `data_dir`, `select_dir`, `seed`,
    `max_per_class`: the run's."""
    learn = modelfile.load(run / "model.pkl", expected_sha256=facts.sha256)
    written = data.read_split(run, data_dir, facts.sha256)  # the split the run wrote beside its model
    train, valid = evaluate.split(data_dir, facts.image_size, seed=seed, max_per_class=max_per_class, written=written)
    photos = candidates.Photos.of(train, valid, select_dir)
    with tempfile.TemporaryDirectory() as scratch:
        graphs = make(learn, calibration_photos(train), Path(scratch))
        comparison = compare(learn, Path(scratch), photos)
        for old in run.glob(INT8_GLOB):
            old.unlink()
        for name in graphs:  # beside model.pkl either way, to look at and to time (`bench.floor`); named if they serve
            shutil.copyfile(Path(scratch) / name, run / name)
    serving = graphs if comparison.ships == "int8" else {}
    return replace(facts, int8=comparison.to_dict(), graphs=serving), comparison


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.training.quantize", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", type=Path, help="a finished training run's output_dir (runs/latest)")
    parser.add_argument("--data", type=Path, default=evaluate.DEFAULT_DATA, help="the run's data_dir")
    parser.add_argument("--select", type=Path, help="the run's select_dir (None: validation chooses)")
    parser.add_argument("--seed", type=int, default=data.SEED, help="the run's seed")
    args = parser.parse_args(argv)
    card_path, select = args.run / "model_card.md", evaluate.external_folder(args.select)
    facts, comparison = quantize_run(args.run, card.read(card_path), args.data, select, args.seed)
    card_writer.write(facts, card_path, sources=card_writer.source_notes(args.data, select))
    for photo, found in comparison.differing.items():
        print(f"{photo}: {'; '.join(found)}")
    print(card_writer.int8_text(facts.int8, facts.graphs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
