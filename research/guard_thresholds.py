"""Found: on the 320 px fine-tune (`runs/ft320`), a guard threshold set on validation scores instead of training scores still flags 5.3% (99th percentile) or 3.8% (largest score) of external bears, and the largest starts letting ImageNet photos and dogs through; BENCHMARKS.md "Issue 18" (commit 14a872e, which added this file).

The guard's score of every photo a model.pkl is measured on, and the share flagged under thresholds set on
the training or the validation split only (the external photos only measure):

    python -m research.guard_thresholds runs/ft320/model.pkl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bear_classifier.model import modelfile
from bear_classifier.model.predictor import Predictor
from bear_classifier.model.transforms import input_size
from bear_classifier.training import evaluate


def scores(predictor: Predictor, paths: list[Path]) -> torch.Tensor:
    return torch.tensor([p.ood_score for p in predictor.predict_batch(paths)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.guard_thresholds")
    parser.add_argument("model", type=Path)
    args = parser.parse_args()
    learn = modelfile.load(args.model)
    predictor = Predictor(learn)
    train, valid = evaluate.split(evaluate.DEFAULT_DATA, input_size(learn))
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    sets = {"train": train, "valid": valid, "external bears": [p for v in bears.values() for p in v], **not_bears}
    found = {name: scores(predictor, list(paths)) for name, paths in sets.items()}
    thresholds = {
        "stored (training q0.99)": predictor.guard.threshold,
        "validation q0.99": float(torch.quantile(found["valid"], 0.99)),
        "validation max": float(found["valid"].max()),
    }
    for name, threshold in thresholds.items():
        flagged = {k: round((v > threshold).float().mean().item(), 3) for k, v in found.items()}
        print(f"{name}: {threshold:.4f}", json.dumps(flagged))


if __name__ == "__main__":
    main()
