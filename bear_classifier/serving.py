"""Everything app.py needs beyond the Interface itself: which model to load, how to turn a
prediction into what the page and the API show, and the text around it.

Configuration (environment variables, all optional):
  BEAR_MODEL_REPO      Hub model repo to download model.pkl from, instead of the committed file
  BEAR_MODEL_REVISION  the commit SHA to pin it to (required with BEAR_MODEL_REPO)
  BEAR_MODEL_SHA256    expected SHA-256 of the pickle (default: the one in its model card)
  BEAR_ALLOW_UNPINNED  "1" to accept a branch name as revision (not recommended: a pickle is code)
  BEAR_DRAFT_JPEG      "1" to decode large JPEGs at reduced size (faster, probabilities not bit-identical)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import card, export, hub
from .images import ImageError, ImageInput
from .predictor import Prediction, Predictor

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "model.pkl"
CARD_PATH = ROOT / "model_card.md"


def model_files() -> tuple[Path, Path]:
    """model.pkl and its model card: from a Hub repo at a pinned commit, or the committed files."""
    repo = os.environ.get("BEAR_MODEL_REPO")
    if not repo:
        return MODEL_PATH, CARD_PATH
    revision = os.environ.get("BEAR_MODEL_REVISION")
    allow = os.environ.get("BEAR_ALLOW_UNPINNED") == "1"
    model = hub.download(repo, revision, "model.pkl", allow_unpinned=allow)
    return model, hub.download(repo, revision, "README.md", allow_unpinned=allow)


def load() -> tuple[Predictor, card.TrainingFacts]:
    """`load_learner` once, at start-up, after checking the file's SHA-256 (BEAR_MODEL_SHA256,
    else the one its model card records)."""
    model_path, card_path = model_files()
    facts = card.read_facts(card_path)
    expected = os.environ.get("BEAR_MODEL_SHA256") or facts.sha256
    draft = os.environ.get("BEAR_DRAFT_JPEG") == "1"
    return Predictor(export.load(model_path, expected_sha256=expected), draft=draft), facts


@dataclass
class Answer:
    """One request's result in the three shapes the Interface outputs: probabilities for gr.Label,
    a sentence for people, and a dict for API callers."""

    probabilities: dict[str, float] | None
    message: str
    details: dict[str, Any]

    def as_outputs(self) -> tuple:
        return self.probabilities, self.message, self.details


def answer(prediction: Prediction) -> Answer:
    top = prediction.probabilities[prediction.label]
    if prediction.out_of_domain:
        message = (
            f"**This does not look like any photo the model was trained on** (it knows only "
            f"{', '.join(prediction.probabilities)} bears). Its best guess, *{prediction.label}* "
            f"({top:.0%}), is not to be trusted."
        )
    else:
        message = f"**{prediction.label}** bear ({top:.0%})."
    details = {
        "label": prediction.label,
        "confidence": top,
        "out_of_domain": prediction.out_of_domain,
        "ood_score": round(prediction.ood_score, 4),
        "error": None,
    }
    return Answer(prediction.probabilities, message, details)


def refusal(error: ImageError) -> Answer:
    message = f"**Could not classify this upload.** {error}"
    return Answer(None, message, {"label": None, "confidence": None, "out_of_domain": None, "ood_score": None, "error": str(error)})


def classify_all(predictor: Predictor, images: list[ImageInput | None]) -> list[Answer]:
    """Answer every image of a batch. A bad upload gets its own refusal and never fails the
    other requests that Gradio batched with it."""
    answers: list[Answer | None] = [None] * len(images)
    good: list[tuple[int, Any]] = []
    for i, image in enumerate(images):
        try:
            good.append((i, predictor.decode(image)))
        except ImageError as e:
            answers[i] = refusal(e)
    if good:
        for (i, _), prediction in zip(good, predictor.predict_decoded([picture for _, picture in good])):
            answers[i] = answer(prediction)
    return answers  # type: ignore[return-value]


def description(facts: card.TrainingFacts) -> str:
    return (
        f"Upload a photo of a bear: the model tells **{', '.join(facts.vocab)}** bears apart "
        f"and says how sure it is. Photos unlike its training data are flagged."
    )


def article(facts: card.TrainingFacts) -> str:
    """How the model was made and how good it is, read from the model card."""
    return f"""
### How it was made
A `{facts.arch}` pretrained on ImageNet, fine-tuned for {facts.epochs} epochs with fastai on
{facts.n_train + facts.n_valid} photos from web image search
({", ".join(f"{n} {label}" for label, n in facts.counts.items())}), following fast.ai's
"Practical Deep Learning" lesson on production.

### How accurate it is
**{facts.valid_accuracy:.1%}** on {facts.n_valid} held-out validation photos; a pixel-similarity
baseline gets {facts.baseline_accuracy:.1%}.

### What it cannot do
It knows only these {len(facts.vocab)} classes and always picks one: a brown bear, a panda or a cat
gets a bear label. Such photos are flagged as *not like the training data*, but the check is not
perfect. The training photos are mostly clear, centred web photos; night-time, camera-trap or
distant shots may be misread. This is a demo, not a safety tool.

### Wrong answer?
Use the buttons below the result to tell us the right class: flagged photos go to a review folder
and are used to fine-tune the model further.
"""
