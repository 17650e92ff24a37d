"""The model card (the Hub repo's README.md) as the app and the Space read it: the facts its YAML front matter
holds (`bear_classifier:`), which say what the model is, what it was trained on, and what the page says of it.
`training.card_writer` measures and writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import ModelCard


@dataclass(frozen=True)
class Subject:
    """What the photos show and how the app introduces it (training.ipynb's subject parameters; `page` writes
    every word from them)."""

    subject: str = "bear"
    """A noun for one photo's subject, e.g. "bear", "fruit"."""
    title: str = "Grizzly, black or teddy?"
    description: str = "Tells black, grizzly and teddy bears apart."
    """One line: under the title, and the Space's short description when it fits (60 characters)."""
    emoji: str = "🐻"

    @classmethod
    def of(cls, facts: TrainingFacts) -> Subject:
        return cls(facts.subject, facts.title, facts.description, facts.emoji)

    @property
    def slug(self) -> str:
        """The subject as a repo name part: "bear" -> "bear-classifier"."""
        return "-".join("".join(c if c.isalnum() else " " for c in self.subject.lower()).split()) + "-classifier"


BEARS = Subject()
"""The shipped model's subject; an old card without subject facts reads as this."""


@dataclass
class TrainingFacts:
    arch: str
    vocab: list[str]
    image_size: int
    epochs: int
    learning_rate: float | None
    """None when nothing was trained (the zero-shot recipe)."""
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
    recipe: str = ""
    """How the network was trained, e.g. "linear probe" (see training.ipynb)."""
    # From `python -m bear_classifier.training.evaluate` (see `card_writer.facts`); None where not measured.
    zero_shot_accuracy: float | None = None
    zero_shot_mapping: dict = field(default_factory=dict)
    external_accuracy: float | None = None
    external_baseline_accuracy: float | None = None
    external_zero_shot_accuracy: float | None = None
    n_external: int = 0
    valid_flagged: float | None = None
    external_bears_flagged: float | None = None
    not_bears_flagged: dict = field(default_factory=dict)
    """Source folder -> share of its not-bear photos flagged out of domain."""
    n_not_bears: dict = field(default_factory=dict)
    ood_classes: list = field(default_factory=list)
    """The ImageNet classes that count as in domain."""
    ood_size: int | None = None
    """The input size the guard reads (the pretrained network's own)."""
    wise_ft: dict = field(default_factory=dict)
    """WiSE-FT share of the fine-tuned weights tried -> validation loss and accuracy (shown; the choice chose)."""
    choice: dict = field(default_factory=dict)
    """The candidates measured, the one chosen and why (`choice.Choice.to_dict`); empty in cards from before it."""
    warnings: list = field(default_factory=list)
    """What the run warns about (`choice.warnings`)."""
    external_half: str | None = None
    """The half of the external folder the external numbers are measured on (`data.external_half`)."""
    # What the photos show (training.ipynb's subject parameters, `Subject`); a card written before they
    # travelled here is the bear classifier's.
    int8: dict = field(default_factory=dict)
    """The chosen model's int8 graphs against its fp32 ones (`quantize.Comparison.to_dict`); empty: not compared."""
    graphs: dict = field(default_factory=dict)
    """The int8 graphs that serve: file name beside model.pkl -> SHA-256 (`quantize`). Empty: the fp32 graphs made
    from model.pkl serve."""
    subject: str = BEARS.subject
    title: str = BEARS.title
    description: str = BEARS.description
    emoji: str = BEARS.emoji


def read(path: Path) -> TrainingFacts:
    """The facts `training.card_writer.write` wrote, e.g. for the app's description."""
    card = ModelCard.load(Path(path))
    facts = card.data.to_dict().get("bear_classifier")
    if not isinstance(facts, dict):
        raise MissingFactsError(
            f"{path} has no `bear_classifier:` facts in its YAML front matter: it is not a model card written by this "
            "project's training (card_writer.write), e.g. a repo pushed with huggingface_hub's push_to_hub_fastai. "
            "The app serves only models made by training.ipynb: it shows their measured accuracy, data and settings "
            "from those facts and checks the pickle's SHA-256 against the one they record. Push such a model with "
            "`bear_classifier.ship.hub.push` (the notebook does, with -p hub_repo), or unset BEAR_MODEL_REPO to serve "
            "the committed model.pkl."
        )
    return TrainingFacts(**facts)


class MissingFactsError(ValueError):
    """A model card without the facts that `training.card_writer.write` records."""
