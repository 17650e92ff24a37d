"""Writing the model card (the Hub repo's README.md): how the model was made, how good it is, what it cannot do.

The measured facts live in the card's YAML front matter (`bear_classifier:` plus the Hub's standard
`model-index`), so the app reads its accuracy from the card (`model.card`) instead of having it typed in twice. They
come from two records (`facts`): how the training run made the model (`Run`), and what `evaluate`
measured on the model.pkl it exported (`evaluation.Evaluation`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from bear_classifier.model.card import BEARS, Subject, TrainingFacts, read
from bear_classifier.training.choice import GUARD_RULES, MAX_IN_DOMAIN_FLAGGED, MIN_OUT_OF_DOMAIN_FLAGGED, Choice, table
from bear_classifier.training.evaluation import Evaluation, Share

RECIPES = {
    "zero_shot": "zero-shot: the ImageNet-pretrained network unchanged, its ImageNet classes mapped onto ours "
    "from the training photos (`imagenet.zero_shot_head`); nothing trained",
    "linear_probe": "linear probe: the head trained with `freeze()` + `fit_one_cycle({epochs})` on the frozen "
    "pretrained body (BatchNorm statistics frozen too: `train_bn=False`, `BnFreeze`)",
    "fine_tune": "the course's recipe at the course's settings: `fine_tune({epochs})` from a new head, at fastai's "
    "default learning rate {lr:g}",
    "zero_shot_fine_tune": "fine-tuned from the zero-shot reading: head initialised as the pretrained ImageNet "
    "classifier mapped onto ours (`imagenet.zero_shot_head`), whole network trained with `fit_one_cycle({epochs}, "
    "slice({body_lr:.0e}, {lr:.0e}))` on the mapped classes, BatchNorm statistics frozen, the pretrained network's "
    "1000-class output distilled on the training photos (LwF, weight {lwf}), then weights interpolated with the "
    "zero-shot ones (WiSE-FT, share of the fine-tuned {alpha}, chosen with the other candidates)",
}
"""training.ipynb's `recipe` parameter -> how the model card describes it."""


def known_recipe(recipe: str) -> str:
    """`recipe` when training.ipynb knows it; otherwise a ValueError naming the known ones, raised before training
    (an unknown name used to train the course default and fail only when the card was written)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} is not one of {', '.join(RECIPES)}: pass those you want in -p recipes.")
    return recipe


@dataclass(frozen=True)
class Run:
    """How a training run made its model: what the card says that measuring model.pkl cannot tell."""

    arch: str
    image_size: int
    recipe: str
    """training.ipynb's `recipe`, a key of `RECIPES`."""
    epochs: int
    learning_rate: float | None
    """The head's, as used (lr_find's when none was given); None when nothing was trained."""
    body_divisor: float
    """The body's learning rate is `learning_rate / body_divisor` (the zero-shot fine-tune)."""
    lwf: float
    """The weight of the distilled ImageNet output (the zero-shot fine-tune)."""
    wise: dict[float, tuple[float, float]]
    """WiSE-FT share of the fine-tuned weights tried -> (validation loss, accuracy), shown beside the candidates."""
    dropped: dict[str, list[str]]
    """Files dropped while checking the photos, by reason (`data.DataReport.dropped`)."""
    data_source: str
    versions: dict[str, str]
    """The libraries that wrote model.pkl (`modelfile.library_versions`)."""
    share: float | None = None
    """The WiSE-FT share of the fine-tuned weights shipped (the zero-shot fine-tune); None for other recipes."""
    choice: dict = field(default_factory=dict)
    """`choice.Choice.to_dict()`: the candidates, the one chosen, the reason."""
    warnings: list[str] = field(default_factory=list)
    subject: Subject = BEARS
    """What the photos show, and the app's title and description (training.ipynb's subject parameters)."""


def facts(run: Run, evaluation: Evaluation) -> TrainingFacts:
    """The card's facts. Every number measured comes from `evaluation` of the exported model.pkl: the split, the
    accuracies beside their baselines, the guard as the file holds it, the file's SHA-256."""
    model, pixels, zero_shot, guard = evaluation.model, evaluation.pixels, evaluation.zero_shot, evaluation.guard
    if pixels is None or zero_shot is None or guard is None or model.ood is None or evaluation.model_file is None:
        raise ValueError(
            "A model card needs the evaluation of a model.pkl file with its baselines and its out-of-domain guard: "
            "`evaluate.evaluate_file(path)` (baselines on) of a model exported by training.ipynb."
        )
    wise_ft = {str(a): {"valid_loss": loss, "valid_accuracy": acc} for a, (loss, acc) in run.wise.items()}
    return TrainingFacts(
        arch=run.arch,
        vocab=evaluation.vocab,
        image_size=run.image_size,
        epochs=run.epochs,
        learning_rate=run.learning_rate,
        valid_accuracy=_rate(model.valid),
        baseline_accuracy=_rate(pixels.valid),
        n_train=evaluation.data.n_train,
        n_valid=evaluation.data.n_valid,
        counts=evaluation.data.counts,
        dropped={why: len(paths) for why, paths in run.dropped.items()},
        data_source=run.data_source,
        versions=run.versions,
        ood_threshold=guard.threshold,
        ood_quantile=guard.quantile,
        sha256=evaluation.model_file.sha256,
        recipe=_recipe(run),
        zero_shot_accuracy=_rate(zero_shot.valid),
        zero_shot_mapping=zero_shot.mapping,
        external_accuracy=_rate(model.external_bears),
        external_baseline_accuracy=_rate(pixels.external_bears),
        external_zero_shot_accuracy=_rate(zero_shot.external_bears),
        n_external=model.external_bears.n if model.external_bears else 0,
        valid_flagged=_rate(model.ood.valid),
        external_bears_flagged=_rate(model.ood.external_bears),
        not_bears_flagged={source: share.rate for source, share in model.ood.not_bears.items()},
        n_not_bears={source: share.n for source, share in model.ood.not_bears.items()},
        ood_classes=guard.in_domain,
        ood_size=guard.size,
        wise_ft=wise_ft,
        choice=run.choice,
        warnings=run.warnings,
        external_half=evaluation.external.half,
        subject=run.subject.subject,
        title=run.subject.title,
        description=run.subject.description,
        emoji=run.subject.emoji,
    )


def _rate(share: Share | None) -> float | None:
    return share.rate if share else None


def _recipe(run: Run) -> str:
    lr = run.learning_rate or 0
    return RECIPES[run.recipe].format(
        epochs=run.epochs, lr=lr, body_lr=lr / run.body_divisor, lwf=run.lwf, alpha=run.share
    )


BODY = """
# {emoji} {title} ({vocab_list})

{description}

An ImageNet-pretrained {arch} made into a fastai classifier of **{vocab_list}** ({recipe}),
following fast.ai's "Practical Deep Learning" production lesson. Try it in the Space, or load it yourself:

```python
import timm  # the learner needs it
from fastai.vision.all import load_learner

learn = load_learner("model.pkl")  # only load pickles you trust: unpickling runs code
label, index, probs = learn.predict("photo.jpg")
```

## Results

Accuracy on the validation split ({n_valid} photos, seeded 20% of the training folders) and on
{n_external_text} (see *Data*); the baseline ladder first:

| model | validation | external photos |
|---|---|---|
| pixel-similarity baseline (nearest class-mean 32x32 thumbnail) | {baseline_accuracy:.1%} | {external_baseline_text} |
| {arch} ImageNet-pretrained, zero-shot (its ImageNet classes mapped onto ours from the training photos) | {zero_shot_text} | {external_zero_shot_text} |
| this model | **{valid_accuracy:.1%}** | **{external_text}** |

{mapping_text}
{wise_text}{choice_text}
{int8_text}
Confusion matrix (validation split): `confusion_matrix.png`. Measured with
`python -m bear_classifier.training.evaluate --model model.pkl`.

## Out-of-domain guard

The model only knows {n_classes} classes and always answers with one of them, so a photo is
flagged *out of domain* when the network's own ImageNet output puts too little probability on the ImageNet
classes that its training photos carry: {ood_classes_text}. {guard_rule_text}Its score is the ImageNet
probability mass outside those classes; above {ood_threshold:.4f} a photo is flagged. The external sets below
only measure it. The guard reads {ood_pass_text}, through the ImageNet classifier the head carries. Flagged
answers should not be trusted.

| photos | flagged out of domain |
|---|---|
| validation photos of the classes (should be low) | {valid_flagged_text} |
| external photos of the classes (should be low) | {external_flagged_text} |
{not_bears_rows}

## Data

{data_source}

| class | images |
|---|---|
{count_rows}

Dropped while checking the files: {dropped_text}.

Known gaps: photos unlike the training photos (other light, other angles, distant or night-time shots,
drawings) are likely to be misread (domain shift).
{sources}
## Intended use and limits

A teaching demo of the full train, clean, export and deploy loop. **Not** a safety tool: do not
use it to decide anything that matters. Photos of anything that is not one of the {n_classes} classes
are out of domain.

## Training

`training.ipynb` in the Space's repository: `DataBlock` with `RandomResizedCrop({image_size}, min_scale=0.5)`
and `aug_transforms()`, ImageNet-pretrained `{arch}`, {recipe}{learning_rate_text}.

## Environment that wrote model.pkl

model.pkl holds no Python bytecode (`bear_classifier.training.export` writes it portably), so it loads on any Python minor;
install these libraries at the same minor release (another patch release is fine).

| package | version |
|---|---|
{version_rows}

SHA-256 of model.pkl: `{sha256}`
"""


def _accuracy(dataset_type: str, dataset_name: str, value: float) -> EvalResult:
    """One accuracy line of the Hub's model-index."""
    return EvalResult(
        task_type="image-classification",
        dataset_type=dataset_type,
        dataset_name=dataset_name,
        metric_type="accuracy",
        metric_value=round(value, 4),
    )


def write(facts: TrainingFacts, path: Path, sources: str = "") -> Path:
    """Write the card to `path`. `sources`: what the data folders' own SOURCE.md files say (`source_notes`)."""
    subject = Subject.of(facts)
    data = ModelCardData(
        license="apache-2.0",
        library_name="fastai",
        pipeline_tag="image-classification",
        tags=["image-classification", "fastai", "timm", "-".join(subject.subject.lower().split())],
        model_name=subject.slug,
        eval_results=[
            _accuracy(f"{subject.slug}-validation", f"{subject.title} (validation split)", facts.valid_accuracy),
            *(
                [
                    _accuracy(
                        f"{subject.slug}-external",
                        f"{subject.title} (photos from another source, evaluation only)",
                        facts.external_accuracy,
                    )
                ]
                if facts.external_accuracy is not None
                else []
            ),
        ],
        bear_classifier=asdict(facts),
    )
    values = asdict(facts)
    values.update(
        vocab_list=", ".join(facts.vocab),
        learning_rate_text=f"; learning rate {facts.learning_rate:.0e}, {facts.epochs} epochs"
        if facts.learning_rate
        else "",
        wise_text=_wise(facts.wise_ft),
        choice_text=choice_text(facts),
        int8_text=int8_text(facts.int8, facts.graphs),
        guard_rule_text=_guard_rule(facts),
        ood_pass_text=_guard_pass(facts),
        n_classes=len(facts.vocab),
        n_external_text=f"{facts.n_external} external photos of the classes"
        if facts.n_external
        else "external photos of the classes (not measured)",
        external_baseline_text=_pct(facts.external_baseline_accuracy),
        zero_shot_text=_pct(facts.zero_shot_accuracy),
        external_zero_shot_text=_pct(facts.external_zero_shot_accuracy),
        external_text=_pct(facts.external_accuracy),
        mapping_text=_mapping(facts.zero_shot_mapping),
        ood_classes_text=", ".join(f"*{name.split(',')[0]}*" for name in facts.ood_classes) or "(none recorded)",
        valid_flagged_text=_pct(facts.valid_flagged),
        external_flagged_text=_pct(facts.external_bears_flagged),
        not_bears_rows="\n".join(
            f"| none of the classes: `{source}` ({facts.n_not_bears.get(source, '?')} photos; should be high) | {_pct(share)} |"
            for source, share in facts.not_bears_flagged.items()
        ),
        count_rows="\n".join(f"| {label} | {n} |" for label, n in facts.counts.items()),
        dropped_text=", ".join(f"{n} {why}" for why, n in facts.dropped.items()) or "none",
        sources=sources,
        version_rows="\n".join(f"| {name} | {version} |" for name, version in facts.versions.items()),
    )
    content = f"---\n{data.to_yaml()}\n---\n" + BODY.format(**values)
    path = Path(path)
    path.write_text(content, encoding="utf-8")
    return path


def source_notes(*folders: Path | None) -> str:
    """What the data folders say about themselves, for the card's data section: each SOURCE.md in a folder or in
    its subfolders (an external folder's `bears/` and `not_bears/`), its headings moved below the card's."""
    notes = []
    for folder in (Path(f) for f in folders if f is not None):
        for source in sorted([*folder.glob("SOURCE.md"), *folder.glob("*/SOURCE.md")]):
            lines, fenced = [], False
            for line in source.read_text(encoding="utf-8").splitlines():
                fenced ^= line.startswith("```")
                lines.append(f"##{line}" if line.startswith("#") and not fenced else line)
            where = source.relative_to(folder.parent).as_posix()
            notes.append(f"\n### What `{where}` says\n\n" + "\n".join(lines).strip() + "\n")
    return "".join(notes)


def _wise(wise: dict) -> str:
    if not wise:
        return ""
    rows = "\n".join(f"| {a} | {v['valid_loss']:.4f} | {v['valid_accuracy']:.1%} |" for a, v in wise.items())
    return (
        "\nThe fine-tune from the zero-shot reading, on validation: weights interpolated between the zero-shot start "
        "(share 0) and the fine-tuned network (share 1). Validation comes from the same web search as the training "
        "photos, so it does not choose when a second source does (below).\n\n| share of the fine-tuned weights | "
        f"validation loss | validation accuracy |\n|---|---|---|\n{rows}\n"
    )


def choice_text(facts: TrainingFacts) -> str:
    """The candidates' table, the one chosen and why, and the run's warnings (markdown; empty before choices)."""
    if not facts.choice:
        return ""
    made = Choice.from_dict(facts.choice)
    external = (
        f" The external numbers above ({facts.external_half} half) are other photos: they chose nothing."
        if facts.external_half
        else ""
    )
    text = (
        f"\n### How this model was chosen\n\nEvery candidate was measured on the same photos: {made.on}. The rule "
        "(`bear_classifier.training.choice`, written before anything was measured): of the candidates whose guard meets its "
        f"targets there (at most {MAX_IN_DOMAIN_FLAGGED:.0%} of in-domain photos flagged, give or take one photo, at least "
        f"{MIN_OUT_OF_DOMAIN_FLAGGED:.0%} of every not-in-domain folder), none below the zero-shot reading, the most "
        f"photos right; within one photo, one forward pass first, then the higher WiSE-FT share.{external}"
        f"\n\n{table(made)}\n\n**Chosen: {made.chosen.name}**, "
        f"because {made.reason}\n"
    )
    if facts.warnings:
        text += "\n**Warnings**:\n\n" + "\n".join(f"- {w}" for w in facts.warnings) + "\n"
    return text


def int8_text(comparison: dict, graphs: dict) -> str:
    """The int8 graphs against the fp32 ones, and which serve with their SHA-256s (markdown; empty when not compared)."""
    if not comparison:
        return ""
    both = [comparison["fp32"], comparison["int8"]]
    serving = both[comparison["ships"] == "int8"]["name"]
    rows = table(Choice.from_dict({"candidates": both, "chosen": serving, "reason": "", "on": "the choosing photos"}))
    served = (
        "\n".join(f"- `{name}`: SHA-256 `{sha}`" for name, sha in graphs.items())
        if graphs
        else "- the fp32 graphs, exported from model.pkl where it is trusted (`bear_classifier.model.servedfiles`)"
    )
    return (
        "\n### int8 or fp32 graphs\n\nThe chosen model's forward passes, quantized to int8 by ONNX Runtime "
        "(`bear_classifier.training.quantize`, calibrated on training photos), against its fp32 graphs on the same photos. "
        f"Of {comparison['photos']} photos compared, {comparison['labels_differ']} get another label and "
        f"{comparison['flags_differ']} another guard flag; one class probability differs by at most "
        f"{comparison['max_gap']:.3f}.\n\n{rows}\n\n**Serving {comparison['ships']}**: {comparison['reason']}. "
        f"The graphs that serve:\n\n{served}\n"
    )


def _guard_rule(facts: TrainingFacts) -> str:
    """How the guard was fitted on the training photos, and what chose that way; nothing for a card written before
    the choice (which of the ways fitted its guard, its facts do not say)."""
    made = Choice.from_dict(facts.choice) if facts.choice else None
    if made is None or made.chosen.guard not in GUARD_RULES:
        return ""
    return (
        f"Fitted on the training photos as *{made.chosen.guard}* ({GUARD_RULES[made.chosen.guard]}), the way that "
        f"{made.on} chose of {len(GUARD_RULES)} (`choice.best_guard`). "
    )


def _guard_pass(facts: TrainingFacts) -> str:
    if facts.ood_size and facts.ood_size != facts.image_size:
        return f"a second pass at {facts.ood_size} px (the answer reads {facts.image_size} px)"
    return f"the same forward pass as the answer, at {facts.image_size} px"


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1%}"


def _mapping(mapping: dict) -> str:
    if not mapping:
        return ""
    parts = [
        f"{label} = "
        + (
            " + ".join(f"*{name.split(',')[0]}*" for name in names)
            if isinstance(names, list)
            else f"unmapped ({names})"
        )
        for label, names in mapping.items()
    ]
    return "Zero-shot mapping found from the training photos: " + "; ".join(parts) + "."


def rewrite(path: Path) -> Path:
    """Render the card at `path` again from the facts in its front matter, with this version's text: a card
    re-rendered after its prose changed, without training again (`python -m bear_classifier.training.card_writer
    model_card.md`). The data folders' notes it was written with (`source_notes`) stay: they are not facts, and the
    folders may not be here."""
    text = Path(path).read_text(encoding="utf-8")
    start, end = text.find("\n### What `"), text.find("\n## Intended use and limits")
    return write(read(path), path, sources=text[start:end] if 0 <= start < end else "")


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["model_card.md"]:
        print("rewrote", rewrite(Path(name)))
