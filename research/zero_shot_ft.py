"""Found: one epoch of fine-tuning from the zero-shot reading lowered the validation loss but changed no external prediction (97.6%), so it is not shipped; the configurations tried before the notebook run in BENCHMARKS.md's "Issue 18" ladder (commit 0dc7788); added in ad37523.

Fine-tuning from the zero-shot reading (issue 18), one configuration per run, training split only:

    python -m research.zero_shot_ft [--size 224] [--epochs 3] [--lr 1e-4] [--body-divisor 3] [--lwf 1.0]

Prints validation accuracy and log-loss of the zero-shot start, the fine-tuned network and WiSE-FT
interpolations between them (the share of the fine-tuned weights is chosen on validation log-loss), and
keeps the zero-shot and fine-tuned weights in `<out>/` for `bear_classifier.training.evaluate`-style measurement.
The external photos are not read here.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from fastai.vision.all import Learner, set_seed

from bear_classifier.training import data, evaluate, imagenet, train

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def zero_shot_fine_tune(
    learn: Learner,
    mapping,
    epochs: int = 3,
    lr: float = 1e-4,
    body_divisor: float = 3.0,
    lwf: float = 1.0,
) -> train.TrainResult:
    """Fine-tune from what the network knows: the head starts as the zero-shot reading (`zero_shot`), then
    the whole network is trained, gently (low learning rates, BatchNorm statistics frozen), with the loss on
    the mapped classes plus the distillation of the pretrained 1000-class output (`DistilImageNet`).
    `learn`: from `make_learner(..., frozen_body=True)`. Interpolate with `train.wise_ft` afterwards. (training.ipynb's cell holds the same recipe.)"""
    train.zero_shot(learn, mapping)
    teacher = imagenet.pretrained_network(imagenet.arch_of(learn))
    learn.unfreeze()
    learn.fit_one_cycle(epochs, lr_max=slice(lr / body_divisor, lr), cbs=[train.DistilImageNet(teacher, lwf)])
    return train.TrainResult(learn, lr, train.validation_accuracy(learn))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.zero_shot_ft")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--body-divisor", type=float, default=3.0)
    parser.add_argument("--lwf", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("runs/zero_shot_ft"))
    args = parser.parse_args()
    name = f"s{args.size}_e{args.epochs}_lr{args.lr:g}_d{args.body_divisor:g}_lwf{args.lwf:g}"
    args.out.mkdir(parents=True, exist_ok=True)
    set_seed(data.SEED, reproducible=True)
    dls = data.dataloaders(evaluate.DEFAULT_DATA, data.verify_folder(evaluate.DEFAULT_DATA), size=args.size)
    learn = train.make_learner(dls, frozen_body=True)
    mapping = imagenet.fit(learn, dls.train.items).mapping
    train.zero_shot(learn, mapping)
    start = copy.deepcopy(learn.model.state_dict())
    rows = [{"alpha": "zero-shot", "loss": train.validation_loss(learn), "accuracy": train.validation_accuracy(learn)}]
    began = time.perf_counter()
    result = zero_shot_fine_tune(learn, mapping, args.epochs, args.lr, args.body_divisor, args.lwf)
    seconds = time.perf_counter() - began
    tuned = copy.deepcopy(learn.model.state_dict())
    torch.save({"start": start, "tuned": tuned, "mapping": mapping.classes}, args.out / f"{name}.pt")
    for alpha in ALPHAS:
        learn.model.load_state_dict(tuned)
        train.wise_ft(learn, start, alpha)
        rows.append(
            {"alpha": alpha, "loss": train.validation_loss(learn), "accuracy": train.validation_accuracy(learn)}
        )
    summary = {"config": vars(args) | {"out": str(args.out)}, "seconds": round(seconds), "rows": rows}
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=1))
    print(name, f"{seconds:.0f} s; result {result.accuracy:.3f}")
    for row in rows:
        print(f"alpha {row['alpha']}: validation loss {row['loss']:.4f}, accuracy {row['accuracy']:.1%}")


if __name__ == "__main__":
    main()
