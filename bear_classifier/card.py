"""The model card (the Hub repo's README.md): how the model was made, how good it is, what it cannot do.

The measured facts live in the card's YAML front matter (`bear_classifier:` plus the Hub's standard
`model-index`), so the app reads its accuracy from the card instead of having it typed in twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData


@dataclass
class TrainingFacts:
    arch: str
    vocab: list[str]
    image_size: int
    epochs: int
    learning_rate: float
    valid_accuracy: float
    baseline_accuracy: float
    n_train: int
    n_valid: int
    counts: dict[str, int]
    dropped: dict[str, int]
    data_source: str
    versions: dict[str, str]
    ood_threshold: float
    ood_quantile: float
    sha256: str = ""


BODY = """
# Bear classifier ({vocab_list})

A {arch} fine-tuned with fastai to tell **{vocab_list}** apart, following fast.ai's
"Practical Deep Learning" production lesson. Try it in the Space, or load it yourself:

```python
import timm  # the learner needs it
from fastai.vision.all import load_learner
learn = load_learner("model.pkl")  # only load pickles you trust: unpickling runs code
label, index, probs = learn.predict("photo.jpg")
```

## Results (validation split: {n_valid} images, seeded 20%)

| model | accuracy |
|---|---|
| this model | **{valid_accuracy:.1%}** |
| pixel-similarity baseline (nearest class-mean 32x32 thumbnail) | {baseline_accuracy:.1%} |

Confusion matrix: `confusion_matrix.png`.

## Data

{data_source}

| class | images |
|---|---|
{count_rows}

Dropped while checking the files: {dropped_text}.

Known gaps: the photos come from web image search. They are mostly well-lit, centred portraits of
one animal; camera-trap, night-time, campsite or distant photos are rare or absent, so expect lower
accuracy on them (domain shift). Cubs, cinnamon-coloured black bears and grizzly/brown-bear
look-alikes are the hardest cases.

## Intended use and limits

A teaching demo of the full train, clean, export and deploy loop. **Not** a safety tool: do not
use it to decide how to act around a real bear.

It only knows {n_classes} classes and always answers with one of them. Images unlike the training
photos are flagged as *out of domain* by a nearest-neighbour distance in the network's feature space
(threshold: {ood_threshold:.4f}, the {ood_percentile}th percentile of the training images' own
leave-one-out scores); flagged answers should not be trusted.

## Training

`training.ipynb` in the Space's repository: `DataBlock` with `RandomResizedCrop({image_size}, min_scale=0.5)`
and `aug_transforms()`, ImageNet-pretrained `{arch}`, learning rate {learning_rate:.2e} from `lr_find`,
`fine_tune({epochs})`.

## Environment that wrote model.pkl

fastai exports with cloudpickle: load with the same Python minor version and these libraries.

| package | version |
|---|---|
{version_rows}

SHA-256 of model.pkl: `{sha256}`
"""


def write_card(facts: TrainingFacts, path: Path) -> Path:
    data = ModelCardData(
        license="apache-2.0",
        library_name="fastai",
        pipeline_tag="image-classification",
        tags=["image-classification", "fastai", "timm", "bears"],
        model_name="bear-classifier",
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type="bears-web-search",
                dataset_name="Bears (web image search, validation split)",
                metric_type="accuracy",
                metric_value=round(facts.valid_accuracy, 4),
            )
        ],
        bear_classifier=asdict(facts),
    )
    values = asdict(facts)
    values.update(
        vocab_list=", ".join(facts.vocab),
        n_classes=len(facts.vocab),
        ood_percentile=round(facts.ood_quantile * 100),
        count_rows="\n".join(f"| {label} | {n} |" for label, n in facts.counts.items()),
        dropped_text=", ".join(f"{n} {why}" for why, n in facts.dropped.items()) or "none",
        version_rows="\n".join(f"| {name} | {version} |" for name, version in facts.versions.items()),
    )
    content = f"---\n{data.to_yaml()}\n---\n" + BODY.format(**values)
    path = Path(path)
    path.write_text(content, encoding="utf-8")
    return path


def read_facts(path: Path) -> TrainingFacts:
    """The facts written by `write_card`, e.g. for the app's description."""
    card = ModelCard.load(Path(path))
    facts = card.data.to_dict().get("bear_classifier")
    if not isinstance(facts, dict):
        raise MissingFactsError(
            f"{path} has no `bear_classifier:` facts in its YAML front matter: it is not a model card written by this "
            "project's training (card.write_card), e.g. a repo pushed with huggingface_hub's push_to_hub_fastai. "
            "The app serves only models made by training.ipynb: it shows their measured accuracy, data and settings "
            "from those facts and checks the pickle's SHA-256 against the one they record. Push such a model with "
            "`bear_classifier.hub.push` (the notebook does, with -p hub_repo), or unset BEAR_MODEL_REPO to serve "
            "the committed model.pkl."
        )
    return TrainingFacts(**facts)


class MissingFactsError(ValueError):
    """A model card without the facts that `write_card` records."""
