"""Everything app.py needs beyond the Interface itself: which model to load, how to turn a
prediction into what the page and the API show, and the text around it.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import card, export, hub
from .images import ImageError, ImageInput
from .predictor import Prediction, Predictor
from .settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "model.pkl"
CARD_PATH = ROOT / "model_card.md"
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))


def model_files(settings: Settings) -> tuple[Path, Path]:
    """model.pkl and its model card: from a Hub repo at a pinned commit, or the committed files."""
    if not settings.model_repo:
        return MODEL_PATH, CARD_PATH
    files = [
        hub.download(settings.model_repo, settings.model_revision, name, allow_unpinned=settings.allow_unpinned)
        for name in ("model.pkl", "README.md")
    ]
    return files[0], files[1]


def load(settings: Settings) -> tuple[Predictor, card.TrainingFacts]:
    """`load_learner` once, at start-up, after checking the file's SHA-256 (`settings.model_sha256`,
    else the one its model card records)."""
    model_path, card_path = model_files(settings)
    facts = card.read_facts(card_path)
    expected = settings.model_sha256 or facts.sha256
    # Before serving: refuse a model this Python or these libraries cannot run (the message says what to
    # set), and make one plain learn.predict in a child process, so a pickle that would crash at its first
    # prediction stops the start-up instead of the first visitor's request.
    export.startup_check(model_path, facts.versions, EXAMPLES_DIR / "black_bear.jpg", expected_sha256=expected)
    learn = export.load(model_path, expected_sha256=expected)
    return Predictor(learn, draft=settings.draft_jpeg, backend=settings.backend), facts


@dataclass
class Answer:
    """One request's result in the three shapes the Interface outputs: (headline, probabilities) for
    `components.Probabilities`, a sentence for people, and a dict for API callers."""

    probabilities: tuple[str, dict[str, float]] | None
    message: str
    details: dict[str, Any]

    def as_outputs(self) -> tuple:
        return self.probabilities, self.message, self.details


def answer(prediction: Prediction) -> Answer:
    top = prediction.probabilities[prediction.label]
    known = ", ".join(prediction.probabilities)
    if prediction.out_of_domain:
        # The headline must not announce a bear class for a cat: it says what the model cannot tell.
        headline = f"Not a {known.replace(', ', ' / ')} bear?"
        message = (
            f"**This does not look like any photo the model was trained on** (it knows only {known} bears). "
            f"Its best guess, *{prediction.label}* ({top:.0%}), is not to be trusted."
        )
    else:
        headline = prediction.label
        message = f"**{prediction.label}** bear ({top:.0%})."
    details = {
        "label": prediction.label,
        "confidence": top,
        "out_of_domain": prediction.out_of_domain,
        "ood_score": round(prediction.ood_score, 4),
        "error": None,
    }
    return Answer((headline, prediction.probabilities), message, details)


def refusal(error: ImageError) -> Answer:
    message = f"**Could not classify this upload.** {error}"
    return Answer(
        None,
        message,
        {"label": None, "confidence": None, "out_of_domain": None, "ood_score": None, "error": str(error)},
    )


def classify_all(predictor: Predictor, images: list[ImageInput | ImageError | None]) -> list[Answer]:
    """Answer every image of a batch. A bad upload gets its own refusal and never fails the
    other requests batched with it."""
    answers: list[Answer | None] = [None] * len(images)
    good: list[tuple[int, Any]] = []
    for i, image in enumerate(images):
        try:
            if isinstance(image, ImageError):  # refused before decoding (components.UploadedImage)
                raise image
            good.append((i, predictor.decode(image)))
        except ImageError as e:
            answers[i] = refusal(e)
    if good:
        for (i, _), prediction in zip(good, predictor.predict_decoded([picture for _, picture in good])):
            answers[i] = answer(prediction)
    return answers  # type: ignore[return-value]


class Batcher:
    """Joins the photos of concurrent requests into one forward pass.

    Gradio's own batching (`batch=True`) preprocesses a whole batch in one go, so one caller's malformed
    payload fails every request batched with it. Here Gradio handles each request alone, and the requests
    that wait meanwhile share the next forward pass, on this one thread: decoding one photo at a time
    also bounds memory (a 50 MP photo takes 150 MB decoded).
    """

    def __init__(self, predictor: Predictor, max_batch: int = 16):
        self.predictor = predictor
        self.max_batch = max_batch
        self._waiting: queue.SimpleQueue[tuple[ImageInput | ImageError, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="batcher", daemon=True).start()

    def classify(self, image: ImageInput | ImageError | None) -> Answer:
        """The answer for one photo, after at most one forward pass shared with other callers."""
        done: Future = Future()
        self._waiting.put((image, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch and not self._waiting.empty():
                batch.append(self._waiting.get())
            try:
                answers = classify_all(self.predictor, [image for image, _ in batch])
            except Exception:  # never expected; still, one photo must not fail the others: answer one by one
                answers = [self._alone(image) for image, _ in batch]
            for (_, done), result in zip(batch, answers):
                done.set_result(result) if isinstance(result, Answer) else done.set_exception(result)

    def _alone(self, image: ImageInput | ImageError | None) -> Answer | Exception:
        try:
            return classify_all(self.predictor, [image])[0]
        except Exception as e:
            return e


def description(facts: card.TrainingFacts) -> str:
    return (
        f"Upload a photo of a bear: the model tells **{', '.join(facts.vocab)}** bears apart "
        f"and says how sure it is. Photos unlike its training data are flagged."
    )


def article(facts: card.TrainingFacts) -> str:
    """How the model was made and how good it is, read from the model card."""
    recipe = facts.recipe or f"fine-tuned for {facts.epochs} epochs"
    external = (
        f" On {facts.n_external} bear photos **from another source** (a different web search, never trained on): "
        f"**{facts.external_accuracy:.1%}**, against {facts.external_zero_shot_accuracy:.1%} for the pretrained "
        f"network read zero-shot and {facts.external_baseline_accuracy:.1%} for the pixel baseline."
        if facts.external_accuracy is not None
        else ""
    )
    return f"""
### How it was made
A `{facts.arch}` pretrained on ImageNet ({recipe}) with fastai on {facts.n_train + facts.n_valid} photos from
web image search ({", ".join(f"{n} {label}" for label, n in facts.counts.items())}), following fast.ai's
"Practical Deep Learning" lesson on production.

### How accurate it is
**{facts.valid_accuracy:.1%}** on {facts.n_valid} held-out validation photos from the same search; a
pixel-similarity baseline gets {facts.baseline_accuracy:.1%}.{external}

### What it cannot do
It knows only these {len(facts.vocab)} classes and always picks one: a brown bear, a panda or a cat
gets a bear label. Such photos are flagged as *not like the training data*, but the check is not
perfect. The training photos are mostly clear, centred web photos; night-time, camera-trap or
distant shots may be misread. This is a demo, not a safety tool.

### Wrong answer?
Use the buttons below the result to tell us the right class. **A flagged photo is stored** (re-encoded,
without its EXIF data such as location) in a private review folder, where people look at it before it
is used to fine-tune the model. Photos you do not flag are deleted from the server after a while.
"""
