"""Found: one forward pass at 320 px cannot keep both the zero-shot answer (338/340 external bears) and a guard that
meets its targets, and no fine-tune of the ImageNet classifier alone (the body frozen) keeps the answer either: every
one loses 2-9 external bears, LwF or not, at every learning rate and WiSE-FT share; BENCHMARKS.md "Issue 18", fourth
session (the commit that added this file).

Two ways to read answer and guard from the one 320 px pass, everything fitted on the training split, the validation
split and the external sets only measure:

- **a sharper zero-shot reading**: the pretrained network's ImageNet logits divided by a temperature, chosen on the
  training photos alone so that their mean entropy at 320 px equals the one at the network's own 224 px (at 320 px
  the reading is flat, which is what lets polar bears through);
- **the ImageNet classifier fine-tuned from the zero-shot reading** on the frozen body's features of augmented
  training views (the notebook's augmentation at 320 px), with the loss on the mapped classes plus, optionally, the
  pretrained network's 1000-class output at 224 px on the same view distilled (LwF, temperature 2), then WiSE-FT.

    python -m research.one_pass [--views 4] [--out runs/one_pass.md]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from bear_classifier.model.images import open_image
from bear_classifier.model.transforms import Transforms
from bear_classifier.training import data, evaluate, imagenet, train
from bear_classifier.training.imagenet import ImageNetGuard, ZeroShotMapping, class_means
from bench import write_table

SIZE = 320
TEACHER_SIZE = 224
RECIPES = [  # (learning rate, LwF weight, passes over the augmented views)
    (1e-3, 1.0, 1),
    (1e-3, 1.0, 3),
    (3e-3, 1.0, 3),
    (1e-2, 1.0, 3),
    (1e-3, 0.0, 3),
]
SHARES = (0.5, 1.0)


def pooled(network: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The body's average-pooled features (what the ImageNet classifier reads)."""
    return network.forward_head(network.forward_features(batch), pre_logits=True)


def centre_features(network, transforms: Transforms, paths: list[Path], size: int) -> torch.Tensor:
    rows = []
    for start in range(0, len(paths), 32):
        rows.append(pooled(network, transforms([open_image(p) for p in paths[start : start + 32]], size=size)))
    return torch.cat(rows)


def augmented_views(learn, network, views: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features at 320 px, teacher logits at 224 px of the same view, labels) of `views` passes over the
    training split through the notebook's augmentation (RandomResizedCrop + aug_transforms)."""
    feats, teacher, labels = [], [], []
    for _ in range(views):
        for xb, yb in learn.dls.train:
            x = xb.as_subclass(torch.Tensor)
            feats.append(pooled(network, x))
            small = F.interpolate(x, size=(TEACHER_SIZE, TEACHER_SIZE), mode="bilinear", antialias=True)
            teacher.append(network(small))
            labels.append(yb.as_subclass(torch.Tensor))
    return torch.cat(feats), torch.cat(teacher), torch.cat(labels)


def gather_matrix(mapping: ZeroShotMapping) -> torch.Tensor:
    matrix = torch.zeros(len(mapping.vocab), 1000)
    for k, label in enumerate(mapping.vocab):
        matrix[k, mapping.classes[label]] = 1
    return matrix


def fine_tune_classifier(weight, bias, feats, teacher, labels, gather, lr, lwf, passes, temperature=2.0):
    """AdamW with a one-cycle schedule (fastai's `fit_one_cycle` shape), batches of 32, weight decay 0.01."""
    weight, bias = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    optimizer = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=0.01)
    steps = passes * math.ceil(len(labels) / 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    for _ in range(passes):
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), 32):
            i = order[start : start + 32]
            logits = feats[i] @ weight.T + bias
            loss = F.nll_loss(torch.log(torch.softmax(logits, 1) @ gather.T + 1e-30), labels[i])
            if lwf:
                target = torch.softmax(teacher[i] / temperature, 1)
                student = torch.log_softmax(logits / temperature, 1)
                loss = loss + lwf * F.kl_div(student, target, reduction="batchmean") * temperature**2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return weight.detach(), bias.detach()


def measure(name, logits: dict, labels: dict, vocab, mapping, gather) -> str:
    """One table row: validation log-loss and accuracy, external bears, and the three guards fitted on training."""
    probs = {k: torch.softmax(v, 1) for k, v in logits.items()}
    ours = torch.log(probs["valid"] @ gather.T + 1e-30)
    targets = torch.tensor([vocab.index(label) for label in labels["valid"]])
    loss = F.nll_loss(torch.log_softmax(ours, 1), targets)

    def right(key: str) -> int:
        return sum(p == t for p, t in zip(mapping.predict(probs[key]), labels[key]))

    external = [k for k in probs if k.startswith("bears/")]
    cells = [
        name,
        f"{loss:.4f}",
        f"{right('valid')}/{len(targets)}",
        f"{sum(map(right, external))}/{sum(len(labels[k]) for k in external)}",
    ]
    guards = {
        "shares, q0.99": ImageNetGuard.from_shares(probs["train"], labels["train"], vocab),
        "shares, q1.0": ImageNetGuard.from_shares(probs["train"], labels["train"], vocab, quantile=1.0),
        "mass 0.003, q1.0": ImageNetGuard.calibrate(
            class_means(probs["train"], labels["train"], vocab), probs["train"]
        ),
    }
    for guard in guards.values():
        flagged = torch.cat([guard.is_out(probs[k]) for k in external]).float().mean()
        worst = min((float(guard.is_out(probs[k]).float().mean()), k) for k in probs if k.startswith("not_bears/"))
        cells.append(f"{len(guard.in_domain)} / {flagged:.1%} / {worst[0]:.1%} ({worst[1].split('/')[1]})")
    return "| " + " | ".join(cells) + " |"


def entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits, 1)
    return -(p * p.clamp_min(1e-12).log()).sum(1).mean()


def matching_temperature(at_size: torch.Tensor, native: torch.Tensor) -> float:
    """The temperature at which the training photos' mean entropy at 320 px equals the one at 224 px (bisection:
    entropy grows with the temperature)."""
    low, high = 0.05, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if entropy(at_size / mid) < entropy(native) else (low, mid)
    return (low + high) / 2


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.one_pass")
    parser.add_argument("--views", type=int, default=4, help="augmented passes over the training split")
    parser.add_argument("--out", type=Path, default=Path("runs/one_pass.md"))
    args = parser.parse_args()
    torch.manual_seed(0)
    report = data.verify_folder(evaluate.DEFAULT_DATA)
    learn = train.make_learner(data.dataloaders(evaluate.DEFAULT_DATA, report, size=SIZE), frozen_body=True)
    vocab = list(learn.dls.vocab)
    network = imagenet.pretrained_network(imagenet.arch_of(learn))
    transforms = Transforms.of(learn)
    bears, not_bears = evaluate.external_sets(evaluate.DEFAULT_EXTERNAL)
    sets = {"train": list(learn.dls.train.items), "valid": list(learn.dls.valid.items)}
    sets |= {f"bears/{k}": v for k, v in bears.items()} | {f"not_bears/{k}": v for k, v in not_bears.items()}
    labels = {k: [Path(p).parent.name for p in v] for k, v in sets.items()}
    labels |= {k: [k.split("/")[1]] * len(v) for k, v in sets.items() if k.startswith("bears/")}
    weight, bias = network.classifier.weight.detach(), network.classifier.bias.detach()
    with torch.inference_mode():
        feats = {k: centre_features(network, transforms, v, SIZE) for k, v in sets.items()}
        native = network.classifier(centre_features(network, transforms, sets["train"], TEACHER_SIZE))
        views, teacher, view_labels = augmented_views(learn, network, args.views)
    zero_shot = {k: f @ weight.T + bias for k, f in feats.items()}
    mapping = ZeroShotMapping.fit(class_means(torch.softmax(zero_shot["train"], 1), labels["train"], vocab), vocab)
    gather = gather_matrix(mapping)
    temperature = matching_temperature(zero_shot["train"], native)
    lines = [
        "| one pass at 320 px | validation log-loss | validation | external bears | guard: in-domain classes / "
        "external bears flagged / worst not-bear folder flagged, from_shares (carry 0.1, share 0.1), threshold q0.99"
        " | the same, threshold q1.0 | mass (min_mass 0.003), q1.0 |",
        "|---|---|---|---|---|---|---|",
        measure("zero-shot", zero_shot, labels, vocab, mapping, gather),
        measure(
            f"zero-shot, logits / {temperature:.2f} (entropy of the training photos matched to 224 px)",
            {k: v / temperature for k, v in zero_shot.items()},
            labels,
            vocab,
            mapping,
            gather,
        ),
    ]
    for lr, lwf, passes in RECIPES:
        tuned = fine_tune_classifier(weight, bias, views, teacher, view_labels, gather, lr, lwf, passes)
        for share in SHARES:
            w, b = torch.lerp(weight, tuned[0], share), torch.lerp(bias, tuned[1], share)
            name = f"classifier fine-tuned: lr {lr:g}, LwF {lwf:g}, {passes} x {args.views} views, WiSE share {share:g}"
            lines.append(measure(name, {k: f @ w.T + b for k, f in feats.items()}, labels, vocab, mapping, gather))
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
