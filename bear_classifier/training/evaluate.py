"""Measure a model.pkl and its baselines on the validation split AND on photos from elsewhere.

    python -m bear_classifier.training.evaluate --model model.pkl [--data data/bears] [--external data/external]
        [--seed 42] [--json runs/evaluation.json]

The baseline ladder, each on the validation split (the training run's: the split.json its run wrote beside the
model, else made again from its seed, 20%) and on the
external bears (`<external>/bears/<label>/`): pixel similarity (`baseline`), the ImageNet-pretrained
network read zero-shot (`imagenet.ZeroShotMapping`, found from the training split), and the model.
The out-of-domain guard: the share of validation photos and external bears flagged (should be low)
and the share of not-bears flagged per source folder (`<external>/not_bears/<source>/`, should be
high), for the model's own guard and for the zero-shot network's. The external folders are
evaluation-only: nothing here is fitted or calibrated on them. Parts whose folder is missing are
skipped (null or empty in the JSON). The result is an `evaluation.Evaluation`, which the model card
(`card_writer.facts`) and BENCHMARKS.md are built from; `--json` writes it (`Evaluation.to_dict`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from fastai.vision.all import Learner, get_image_files

from bear_classifier.model import modelfile
from bear_classifier.model.guard import KIND as GUARD_KIND
from bear_classifier.model.guard import Guard
from bear_classifier.model.images import ImageError
from bear_classifier.model.predictor import Predictor
from bear_classifier.model.transforms import input_size
from bear_classifier.training import data, imagenet
from bear_classifier.training.baseline import PixelSimilarity
from bear_classifier.training.evaluation import (
    Answers,
    DataSplit,
    Entry,
    Evaluation,
    External,
    GuardFacts,
    ModelFile,
    OutOfDomain,
    Share,
)

DEFAULT_DATA = Path("../shared/data/bears")
DEFAULT_EXTERNAL = Path("../shared/data/external")


def split(
    data_dir: Path,
    size: int,
    seed: int = data.SEED,
    valid_pct: float = data.VALID_PCT,
    max_per_class: int | None = None,
    written: data.WrittenSplit | None = None,
) -> tuple[list[Path], list[Path]]:
    """The training run's split: the one it wrote beside its model (`written`, `data.read_split`) when there is one;
    else made again the way training.ipynb makes it by default (`data.dataloaders`, same seed), for a model without
    its run folder (the committed one)."""
    if written is not None:
        return written.train, written.valid
    report = data.verify_folder(data_dir)
    dls = data.dataloaders(
        data_dir, report, size=size, valid_pct=valid_pct, seed=seed, batch_size=1, max_per_class=max_per_class
    )
    return list(dls.train.items), list(dls.valid.items)


def external_sets(root: Path | None, half: str | None = None) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(in-domain photos by label, not-in-domain photos by source folder), from either layout: `bears/<label>/` plus
    `not_bears/<source>/` (as ../shared/data/external), or plain `<label>/` folders (all in domain). `half`: only the
    photos of that half ("selection" or "test", `data.external_half`); None: all. A folder given that yields no photo
    is an error that names the layouts (it used to measure nothing, silently)."""
    if root is None:
        return {}, {}
    root = Path(root)

    def folders(parent: Path) -> dict[str, list[Path]]:
        if not parent.is_dir():
            return {}
        found = {
            d.name: [p for p in sorted(get_image_files(d)) if half is None or data.external_half(p) == half]
            for d in sorted(parent.iterdir())
            if d.is_dir()
        }
        return {name: paths for name, paths in found.items() if paths}

    if (root / "bears").is_dir() or (root / "not_bears").is_dir():
        in_domain, out_of_domain = folders(root / "bears"), folders(root / "not_bears")
    else:
        in_domain, out_of_domain = folders(root), {}
    if not in_domain and not out_of_domain:
        raise data.DataError(
            f"{root} holds no photos{f' in its {half} half' if half else ''}: lay it out as <label>/<photo> (photos "
            "of your classes), or as bears/<label>/<photo> plus not_bears/<source>/<photo> (photos that are none of "
            "them), as ../shared/data/external is."
        )
    return in_domain, out_of_domain


def external_folder(path: str | Path | None) -> Path | None:
    """The external evaluation folder, or None when none was given. One that was given must exist: a typo
    would otherwise drop the external measurement from the card without a word."""
    if not path:
        return None
    if not Path(path).is_dir():
        raise data.DataError(
            f"external_dir {path} does not exist: give a folder with bears/<label>/ (and not_bears/<source>/), "
            "or leave external_dir out to measure on the validation split only."
        )
    return Path(path)


def confusion(labels: Sequence[str], predicted: Sequence[str], vocab: Sequence[str]) -> Answers:
    """The answers right and the confusion counts (true label -> predicted label -> count)."""
    rows = sorted(set(labels) | set(vocab))
    table = {t: {p: 0 for p in vocab} for t in rows}
    for t, p in zip(labels, predicted):
        table[t][p] += 1
    correct = sum(t == p for t, p in zip(labels, predicted))
    return Answers(n=len(labels), k=correct, confusion=table)


def flagged(flags: Sequence[bool]) -> Share:
    return Share(n=len(flags), k=sum(flags))


def model_outputs(predictor: Predictor, paths: Sequence[Path]) -> tuple[list[str | None], list[bool]]:
    """The shipped code path: labels and out-of-domain flags from `Predictor` (None: a photo it refused)."""
    labels, flags = [], []
    for result in predictor.predict_batch(list(paths)):
        labels.append(None if isinstance(result, ImageError) else result.label)
        flags.append(not isinstance(result, ImageError) and result.out_of_domain)
    return labels, flags


def _evaluate_sets(
    entry: Entry,
    classify: Callable | None,
    flag: Callable | None,
    valid: list[Path],
    bears: dict[str, list[Path]],
    not_bears: dict[str, list[Path]],
    vocab: list[str],
) -> Entry:
    """`entry` measured: `classify(paths) -> labels`, `flag(paths) -> flags`; either may be None."""
    bear_paths = [p for label in bears for p in bears[label]]
    bear_labels = [label for label in bears for _ in bears[label]]
    if classify:
        entry = replace(entry, valid=confusion([p.parent.name for p in valid], classify(valid), vocab))
        if bear_paths:
            entry = replace(entry, external_bears=confusion(bear_labels, classify(bear_paths), vocab))
    if flag:
        ood = OutOfDomain(
            valid=flagged(flag(valid)),
            external_bears=flagged(flag(bear_paths)) if bear_paths else None,
            not_bears={source: flagged(flag(paths)) for source, paths in not_bears.items()},
        )
        entry = replace(entry, ood=ood)
    return entry


def evaluate_learner(
    learn: Learner,
    data_dir: Path = DEFAULT_DATA,
    external: Path | None = DEFAULT_EXTERNAL,
    name: str = "model",
    baselines: bool = True,
    max_per_class: int | None = None,
    seed: int = data.SEED,
    half: str | None = None,
    written: data.WrittenSplit | None = None,
) -> Evaluation:
    """The ladder (pixel similarity, zero-shot, the model) and the guards, on the training run's split (`split`:
    `written`, the one its run wrote, else made again from `seed`, training.ipynb's `seed`: another seed would measure
    on training photos). `half`: of the external folder, only that half (`data.external_half`: "test" for what a
    choice on the "selection" half is reported on)."""
    predictor = Predictor(learn)
    vocab = list(predictor.vocab)
    train, valid = split(Path(data_dir), input_size(learn), seed=seed, max_per_class=max_per_class, written=written)
    seed, valid_pct = (written.seed, written.valid_pct) if written else (seed, data.VALID_PCT)
    bears, not_bears = external_sets(Path(external) if external else None, half)
    pixels = zero_shot = None
    if baselines:
        nearest_mean = PixelSimilarity().fit(train, [p.parent.name for p in train])
        entry = Entry("pixel similarity", "nearest class-mean 32x32 thumbnail (no out-of-domain guard)")
        pixels = _evaluate_sets(entry, nearest_mean.predict, None, valid, bears, not_bears, vocab)
        zero_shot = zero_shot_entry(learn, train, valid, bears, not_bears, vocab)

    cache: dict[tuple, tuple[list[str], list[bool]]] = {}

    def outputs(paths: Sequence[Path]) -> tuple[list[str], list[bool]]:
        key = tuple(paths)
        if key not in cache:
            cache[key] = model_outputs(predictor, list(paths))
        return cache[key]

    guard = predictor.guard
    entry = Entry(name, "" if guard else "this model.pkl has no ImageNet out-of-domain guard")
    model = _evaluate_sets(
        entry,
        lambda p: outputs(p)[0],
        (lambda p: outputs(p)[1]) if guard else None,
        valid,
        bears,
        not_bears,
        vocab,
    )
    return Evaluation(
        vocab=vocab,
        data=DataSplit(
            dir=str(data_dir),
            seed=seed,
            valid_pct=valid_pct,
            n_train=len(train),
            n_valid=len(valid),
            counts={label: sum(p.parent.name == label for p in train + valid) for label in vocab},
        ),
        external=External(
            dir=str(external) if external else None,
            half=half if external else None,
            bears={label: len(paths) for label, paths in bears.items()},
            not_bears={source: len(paths) for source, paths in not_bears.items()},
        ),
        model=model,
        pixels=pixels,
        zero_shot=zero_shot,
        guard=_guard_facts(guard, input_size(learn)) if guard else None,
    )


def _guard_facts(guard: Guard, model_size: int) -> GuardFacts:
    return GuardFacts(
        kind=GUARD_KIND,
        threshold=guard.threshold,
        quantile=guard.quantile,
        size=guard.size or model_size,  # a guard without a size of its own reads the model's input
        in_domain=[imagenet.class_names()[c] for c in guard.in_domain],
    )


def evaluate_file(
    path: Path,
    data_dir: Path = DEFAULT_DATA,
    external: Path | None = DEFAULT_EXTERNAL,
    baselines: bool = True,
    max_per_class: int | None = None,
    seed: int = data.SEED,
    expected_sha256: str | None = None,
    file_sha256: str | None = None,
    half: str | None = None,
    run_dir: Path | None = None,
) -> Evaluation:
    """`evaluate_learner` on an exported model.pkl (checked against `expected_sha256` when given): the record
    names the file measured and its SHA-256, which the model card then records. `file_sha256`: that SHA-256 when
    the caller has just computed it (the notebook's `export.save`), so the file is not read again. `run_dir`: the
    folder where its run wrote the split beside it (`data.write_split`), if any."""
    sha = modelfile.verify(path, expected_sha256, file_sha256)
    learn = modelfile.load(path, expected_sha256=sha, file_sha256=sha)
    evaluation = evaluate_learner(
        learn,
        data_dir,
        external,
        baselines=baselines,
        max_per_class=max_per_class,
        seed=seed,
        half=half,
        written=data.read_split(run_dir, data_dir, sha) if run_dir is not None else None,
    )
    return replace(evaluation, model_file=ModelFile(str(path), sha))


def zero_shot_entry(
    learn: Learner,
    train: list[Path],
    valid: list[Path],
    bears: dict[str, list[Path]],
    not_bears: dict[str, list[Path]],
    vocab: list[str],
) -> Entry:
    """The pretrained network, its ImageNet classes mapped onto ours from the training split, with
    the ImageNet guard calibrated on the training split."""
    network = imagenet.pretrained_network(imagenet.arch_of(learn))
    knowledge = imagenet.fit(learn, train, network)
    mapping, guard = knowledge.mapping, knowledge.guard
    cache: dict[tuple, torch.Tensor] = {}

    def probabilities(paths: Sequence[Path], size: int | None = None) -> torch.Tensor:
        key = (tuple(paths), size)
        if key not in cache:
            cache[key] = imagenet.imagenet_probabilities(learn, list(paths), network, size=size)
        return cache[key]

    note = "no zero-shot baseline: " + "; ".join(mapping.unmapped.values()) if mapping.unmapped else ""
    entry = Entry(f"{imagenet.arch_of(learn)} ImageNet-pretrained, zero-shot", note, mapping=mapping.describe())
    classify = (lambda p: mapping.predict(probabilities(p))) if not mapping.unmapped else None
    flag = lambda p: guard.is_out(probabilities(p)).tolist()  # noqa: E731  one pass, as calibrated
    return _evaluate_sets(entry, classify, flag, valid, bears, not_bears, vocab)


def _pct(share: Share | None, interval: bool = False) -> str:
    if share is None or share.rate is None:
        return "–"
    low, high = share.interval()
    return f"{share.rate:.1%} ({share.k}/{share.n}" + (f"; 95% CI {low:.1%}–{high:.1%})" if interval else ")")


def markdown(evaluation: Evaluation) -> str:
    """The ladder, the guard per source folder and the confusion matrices, as markdown tables."""
    split_facts, ladder, vocab = evaluation.data, evaluation.ladder, evaluation.vocab
    lines = [
        f"Validation split: {split_facts.n_valid} photos (seed {split_facts.seed}, "
        f"{split_facts.valid_pct:.0%} of `{split_facts.dir}`); external: `{evaluation.external.dir}`"
        + (f", its {evaluation.external.half} half." if evaluation.external.half else "."),
        "",
        "| model | validation accuracy | external bears accuracy | validation flagged | external bears flagged | not-bears flagged (worst folder) |",
        "|---|---|---|---|---|---|",
    ]
    for entry in ladder:
        ood = entry.ood
        worst = min(ood.not_bears.values(), key=lambda share: share.rate, default=None) if ood else None
        lines.append(
            f"| {entry.name} | {_pct(entry.valid, interval=True)} | {_pct(entry.external_bears, interval=True)} | "
            f"{_pct(ood and ood.valid)} | {_pct(ood and ood.external_bears)} | {_pct(worst)} |"
        )
    notes = [f"- {entry.name}: {entry.note}" for entry in ladder if entry.note]
    lines += ["", *notes] if notes else []
    guarded = [entry for entry in ladder if entry.ood and entry.ood.not_bears]
    if guarded:
        lines += [
            "",
            "Not-bears flagged out-of-domain, per source folder:",
            "",
            "| source folder | images | " + " | ".join(e.name for e in guarded) + " |",
            "|---|---|" + "---|" * len(guarded),
        ]
        for source, n in evaluation.external.not_bears.items():
            cells = " | ".join(_pct(e.ood.not_bears[source]) for e in guarded)
            lines.append(f"| {source} | {n} | {cells} |")
    for entry in ladder:
        for split_name, answers in (("valid", entry.valid), ("external bears", entry.external_bears)):
            if answers:
                lines += [
                    "",
                    f"Confusion, {entry.name}, {split_name} (rows: true, columns: predicted):",
                    "",
                    "| | " + " | ".join(vocab) + " |",
                    "|---|" + "---|" * len(vocab),
                ]
                lines += [
                    f"| {t} | " + " | ".join(str(row[p]) for p in vocab) + " |" for t, row in answers.confusion.items()
                ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Evaluation:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.training.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, default=Path("model.pkl"))
    # The defaults are where training.ipynb's data_dir (and the README's training command) put the photos.
    parser.add_argument("--data", type=Path, default=Path("data/bears"), help="the training folder (<root>/<label>/*)")
    parser.add_argument(
        "--external",
        type=Path,
        default=None,
        help="bears/<label>/ and not_bears/<source>/, or plain <label>/ folders (measured only)",
    )
    parser.add_argument(
        "--half",
        choices=[*data.HALVES, "all"],
        default="test",
        help="which half of --external, by each photo's SHA-256 (the selection half chooses in training.ipynb's "
        "select_dir; the test half only measures): test by default",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--no-baselines", action="store_true", help="the model only")
    parser.add_argument(
        "--seed",
        type=int,
        default=data.SEED,
        help=f"the training run's split seed (its card says which), for a model whose folder holds no {data.SPLIT_FILE}",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(
            f"no training photos at {args.data}: the validation split is re-made from them. Run training.ipynb "
            "first (it downloads them there), or pass --data <folder with one sub-folder of photos per label>."
        )
    if args.external is not None and not args.external.is_dir():
        parser.error(
            f"--external {args.external} does not exist (it needs <label>/ folders, or bears/<label>/ and "
            "not_bears/<source>/)"
        )
    if not args.model.is_file():
        parser.error(f"no model at {args.model}: pass --model <path to a model.pkl>")
    half = None if args.half == "all" else args.half
    try:
        evaluation = evaluate_file(
            args.model,
            args.data,
            args.external,
            baselines=not args.no_baselines,
            seed=args.seed,
            half=half,
            run_dir=args.model.parent,  # a run's model.pkl: the split its run wrote beside it
        )
    except data.DataError as error:
        parser.error(str(error))
    print(markdown(evaluation))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(evaluation.to_dict(), indent=1))
    return evaluation


if __name__ == "__main__":
    main()
