"""Found: no trained recipe beats the pretrained network read zero-shot on the external bears (course default 94.1%, linear probe 97.1%, LP-FT 92.4%; zero-shot 97.6% at 224 px); its table is BENCHMARKS.md's "Recipes", from commits 28935c4 and 79635c0.

Which fine-tuning recipe keeps what pretraining knew? Each recipe trained on the training split of
../shared/data/bears only, then measured on the validation split and on the external bears
(evaluation-only photos from another source), with the out-of-domain guard read off its own body.

    python -m research.recipes [--only lp,lp-ft,...] [--out runs/recipes]

Recipes (all from the ImageNet-pretrained tf_efficientnet_lite0, seed 42):
- course default: the committed model of the course recipe (`fine_tune(8)`, lr from `lr_find`),
  read from runs/recipes/course_default.pkl (a copy of the committed model.pkl it was made as);
  retrained with `--retrain-default`.
- linear probe: body frozen with its BatchNorm statistics (`train.make_learner(frozen_body=True)`),
  `fit_one_cycle` on the head only (`train.linear_probe`).
- LP-FT: the linear probe, then `unfreeze` and `fit_one_cycle` with a 10x-100x lower body LR.
- WiSE-FT: body weights interpolated between the pretrained and the course-default ones
  (`alpha` = share of fine-tuned), the course-default head.
- + TTA: fastai `learn.tta` (4 augmented passes + the plain one, beta 0.25) on the same photos.

Writes `<out>/recipes.md` and `<out>/recipes.json` (the full table, kept so a reader sees why the
shipped recipe won).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import time
from pathlib import Path

import torch
from fastai.vision.all import Learner, set_seed

from bear_classifier import files
from bear_classifier.model import modelfile
from bear_classifier.training import data, evaluate, export, imagenet, train
from bear_classifier.training.evaluation import Entry, Evaluation

DATA = evaluate.DEFAULT_DATA
EXTERNAL = evaluate.DEFAULT_EXTERNAL
LP_EPOCHS = 8
FT_EPOCHS = 3
ALPHAS = (0.25, 0.5, 0.75)


def fine_tune(learn: Learner, epochs: int, lr: float | None = None, freeze_epochs: int = 1) -> train.TrainResult:
    """fastai's `fine_tune` at `lr` (lr_find's when None)."""
    lr = lr if lr is not None else train.find_lr(learn)
    learn.fine_tune(epochs, base_lr=lr, freeze_epochs=freeze_epochs)
    return train.TrainResult(learn, lr, train.validation_accuracy(learn))


def dataloaders(size: int = 224):
    report = data.verify_folder(DATA)
    return data.dataloaders(DATA, report, size=size)


def linear_probe(dls, epochs: int = LP_EPOCHS, path: Path | None = None) -> tuple[Learner, dict]:
    """Trained here, or read from `path` (e.g. the notebook's model.pkl, made with the same recipe)."""
    if path:
        # A fresh learner on these dataloaders (vision_learner adds the ImageNet normalisation to them),
        # with the exported model's weights: the exported learner's own dls hold no photos.
        learn = train.make_learner(dls, frozen_body=True)
        learn.model.load_state_dict(modelfile.load(path).model.state_dict())
        return learn, {
            "epochs": epochs,
            "source": f"{path}, sha256 {files.sha256(path)[:12]}",
            "body_is_pretrained": imagenet.body_is_pretrained(learn),
        }
    set_seed(data.SEED, reproducible=True)
    learn = train.make_learner(dls, frozen_body=True)
    result = train.linear_probe(learn, epochs)
    return learn, {"lr": result.lr, "epochs": epochs, "body_is_pretrained": imagenet.body_is_pretrained(learn)}


def lp_ft(probe: Learner, epochs: int = FT_EPOCHS, body_divisor: float = 100) -> tuple[Learner, dict]:
    """Unfreeze the linear probe and fine-tune with a low body learning rate."""
    set_seed(data.SEED, reproducible=True)
    learn = probe
    head_lr = 1e-3
    learn.unfreeze()
    learn.fit_one_cycle(epochs, lr_max=slice(head_lr / body_divisor, head_lr))
    return learn, {"epochs": epochs, "lr": f"body {head_lr / body_divisor:.0e}, head {head_lr:.0e}"}


def course_default(dls, retrain: bool, path: Path) -> tuple[Learner, dict]:
    if retrain or not path.exists():
        set_seed(data.SEED, reproducible=True)
        learn = train.make_learner(dls)
        result = fine_tune(learn, 8)
        return learn, {"lr": result.lr, "epochs": 8, "source": "retrained"}
    learn = modelfile.load(path)
    return learn, {"source": f"{path} (the committed model.pkl of the course recipe), sha256 {files.sha256(path)[:12]}"}


def wise_ft(fine_tuned: Learner, alpha: float) -> Learner:
    """Body = (1 - alpha) * pretrained + alpha * fine-tuned (BatchNorm statistics too); the fine-tuned head."""
    learn = copy.deepcopy(fine_tuned)
    pretrained = imagenet.pretrained_network(imagenet.arch_of(learn)).state_dict()
    body = learn.model[0].model
    mixed = {}
    for name, tensor in body.state_dict().items():
        if tensor.is_floating_point():
            mixed[name] = torch.lerp(pretrained[name].to(tensor), tensor, alpha)
        else:
            mixed[name] = tensor
    body.load_state_dict(mixed)
    return learn


def tta_accuracy(learn: Learner, paths: list[Path], labels: list[str]) -> float | None:
    if not paths:
        return None
    set_seed(data.SEED, reproducible=True)
    dl = learn.dls.test_dl(paths, num_workers=0)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        probs, _ = learn.tta(dl=dl)
    vocab = list(learn.dls.vocab)
    return float(sum(vocab[int(i)] == label for i, label in zip(probs.argmax(1), labels)) / len(labels))


def measure(name: str, learn: Learner, facts: dict, with_tta: bool = False, guard: bool = True) -> list[dict]:
    """`guard`: fit the ImageNet guard on the training split, read off this recipe's own body."""
    start = time.perf_counter()
    learn.ood_state = None
    if guard:
        learn.ood_state = imagenet.guard_state(
            learn, imagenet.fit(learn, evaluate.split(DATA, 224)[0], network=imagenet.own_body_network(learn)).guard
        )
    entry = evaluate.evaluate_learner(learn, DATA, EXTERNAL, name=name, baselines=False).model
    rows = [{"recipe": name, **facts, **summary(entry)}]
    if with_tta:
        train_items, valid = evaluate.split(DATA, 224)
        bears, _ = evaluate.external_sets(EXTERNAL)
        bear_paths = [p for label in bears for p in bears[label]]
        rows.append(
            {
                "recipe": name + " + TTA",
                "valid_accuracy": tta_accuracy(learn, valid, [p.parent.name for p in valid]),
                "external_bears_accuracy": tta_accuracy(learn, bear_paths, [p.parent.name for p in bear_paths]),
                "note": "fastai learn.tta (n=4, beta=0.25): 5 forward passes per photo; guard unchanged",
            }
        )
    print(f"{name}: {time.perf_counter() - start:.0f} s to measure", flush=True)
    return rows


def summary(entry: Entry) -> dict:
    """One row of the table (a JSON-ready dict, as recipes.json keeps it)."""
    ood, external = entry.ood, entry.external_bears
    return {
        "valid_accuracy": entry.valid.rate if entry.valid else None,
        "external_bears_accuracy": external.rate if external else None,
        "valid_flagged": ood.valid.rate if ood else None,
        "external_bears_flagged": ood.external_bears.rate if ood and ood.external_bears else None,
        "not_bears_flagged": {source: share.rate for source, share in ood.not_bears.items()} if ood else {},
        "external_confusion": external.confusion if external else None,
    }


def baselines(dls, evaluation: Path | None = None) -> list[dict]:
    """Pixel similarity and zero-shot, measured here or read from an evaluation JSON (`--json` of
    `python -m bear_classifier.training.evaluate`, e.g. the notebook's runs/.../evaluation.json)."""
    if evaluation:
        result = Evaluation.from_dict(json.loads(evaluation.read_text()))
    else:
        learn = train.make_learner(dls, frozen_body=True)  # untrained head: only its transforms and arch are used
        result = evaluate.evaluate_learner(learn, DATA, EXTERNAL, baselines=True)
    return [{"recipe": entry.name, **summary(entry), "note": entry.note} for entry in (result.pixels, result.zero_shot)]


def table(rows: list[dict]) -> str:
    def pct(value):
        return "–" if value is None else f"{value:.1%}"

    sources = sorted({s for row in rows for s in (row.get("not_bears_flagged") or {})})
    lines = [
        "| recipe | validation acc | external bears acc | external bears flagged | worst not-bears folder flagged | training |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        flags = row.get("not_bears_flagged") or {}
        worst = min(flags.items(), key=lambda kv: kv[1]) if flags else None
        training = ", ".join(f"{k} {v}" for k, v in row.items() if k in ("epochs", "lr", "alpha", "seconds"))
        lines.append(
            f"| {row['recipe']} | {pct(row.get('valid_accuracy'))} | {pct(row.get('external_bears_accuracy'))} | "
            f"{pct(row.get('external_bears_flagged'))} | {f'{worst[1]:.1%} ({worst[0]})' if worst else '–'} | {training} |"
        )
    if sources:
        lines += [
            "",
            "Not-bears flagged per source folder (guard read off each recipe's own body, one forward pass):",
            "",
            "| recipe | " + " | ".join(sources) + " |",
            "|---|" + "---|" * len(sources),
        ]
        for row in rows:
            flags = row.get("not_bears_flagged") or {}
            if flags:
                lines.append(f"| {row['recipe']} | " + " | ".join(pct(flags.get(s)) for s in sources) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.recipes")
    parser.add_argument("--only", default="baselines,default,wise,lp,lp-ft")
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--retrain-default", action="store_true")
    parser.add_argument("--baselines-from", type=Path, default=None, help="an evaluation JSON with the baseline rows")
    parser.add_argument("--append", action="store_true", help="add to the rows already in <out>/recipes.json")
    parser.add_argument(
        "--lp-model", type=Path, default=None, help="a linear-probe model.pkl to measure instead of training one"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(torch.get_num_threads())
    dls = dataloaders()
    rows: list[dict] = json.loads((args.out / "recipes.json").read_text()) if args.append else []

    def save() -> None:
        (args.out / "recipes.json").write_text(json.dumps(rows, indent=1))
        (args.out / "recipes.md").write_text(table(rows) + "\n")

    if "baselines" in only:
        rows += baselines(dls, args.baselines_from)
        save()
    if "default" in only or "wise" in only:
        start = time.perf_counter()
        default, facts = course_default(dls, args.retrain_default, args.out / "course_default.pkl")
        facts["seconds"] = round(time.perf_counter() - start)
        if "default" in only:
            rows += measure("course default: fine_tune(8)", default, facts, with_tta=True)
            save()
        if "wise" in only:
            for alpha in ALPHAS:
                rows += measure(f"WiSE-FT alpha={alpha}", wise_ft(default, alpha), {"alpha": alpha}, guard=False)
                save()
    if "lp" in only or "lp-ft" in only:
        start = time.perf_counter()
        probe, facts = linear_probe(dls, path=args.lp_model)
        facts["seconds"] = round(time.perf_counter() - start)
        if not args.lp_model:
            export.save(probe, args.out / "linear_probe.pkl")
        rows += measure(f"linear probe: frozen body + BN, fit_one_cycle({LP_EPOCHS})", probe, facts, with_tta=True)
        save()
        if "lp-ft" in only:
            start = time.perf_counter()
            tuned, facts = lp_ft(probe)
            facts["seconds"] = round(time.perf_counter() - start)
            export.save(tuned, args.out / "lp_ft.pkl")
            rows += measure(f"LP-FT: + unfreeze, fit_one_cycle({FT_EPOCHS})", tuned, facts, with_tta=True)
            save()
    print(table(rows))


if __name__ == "__main__":
    main()
