"""The model behind the page: which model.pkl to load and how (checked first; from its served graphs or cache when it
can), the answers remembered by content, and how a prediction becomes what the page and the API show (in the words
of `page`). `launch` wires it into the app.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from bear_classifier import files, page
from bear_classifier.model import card, modelfile, served, servedfiles
from bear_classifier.model.decoding import Decoded, DecoderPool, NotThePhoto
from bear_classifier.model.images import ImageError, ImageInput
from bear_classifier.model.predictor import Prediction, Predictor
from bear_classifier.settings import EXAMPLES_DIR, ROOT, Settings
from bear_classifier.ship import hub, spacetree
from bear_classifier.web.clients import Quotas, wait

MODEL_PATH = ROOT / "model.pkl"
CARD_PATH = ROOT / "model_card.md"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
UNSURE_MARGIN = 0.3
"""A lead of the top class over the second below this is a close call: the verdict names both classes. On the
shipped model's own training photos, answers with a smaller lead are right 5 times in 12; with a larger one,
404 of 405, and all 104 validation photos have a larger one (`python -m research.margins`)."""


SERVED_NOTE = "its SHA-256 matched the expected one, and it was not unpickled."
"""What a start served from the cache (`served`) says, in place of `modelfile.load`'s line."""


def model_files(settings: Settings) -> tuple[Path, Path]:
    """model.pkl and its model card: from a Hub repo at a pinned commit, or the committed files."""
    if not settings.model_repo:
        return MODEL_PATH, CARD_PATH

    def download(name: str) -> Path:
        return hub.download(settings.model_repo, settings.model_revision, name, allow_unpinned=settings.allow_unpinned)

    model, model_card = download("model.pkl"), download("README.md")
    for name in card.read(model_card).graphs:  # the int8 graphs it serves, beside model.pkl in the same snapshot
        download(name)
    return model, model_card


def load(settings: Settings, learner: bool = False) -> tuple[Predictor, card.TrainingFacts]:
    """The model, once, at start-up, after checking the file's SHA-256 (`settings.model_sha256`, else the one its
    model card records): from what an earlier start with this file and environment kept (`served`: neither
    fastai nor timm is imported, model.pkl is not unpickled), else with `load_learner`, keeping that for the next.
    `learner`: with `load_learner` all the same, for callers that read `Predictor.learn` (tests, benchmarks)."""
    model_path, card_path = model_files(settings)
    facts = card.read(card_path)
    expected = settings.model_sha256 or facts.sha256
    # model.pkl is read and hashed once (tens of ms): the checks, the load and the caches' names reuse it.
    sha = modelfile.verify(model_path, expected)
    for warning in hub.public_feedback(settings.feedback_repo, settings.space_id):
        print(warning, file=sys.stderr, flush=True)  # loud, at every start, until someone fixes it
    note = SERVED_NOTE if expected else "no SHA-256 was given to check it against, and it was not unpickled."
    # The ONNX graphs, too, are exported once per model (files named by its SHA-256), with the record beside them.
    int8 = servedfiles.int8_graphs(model_path, facts)  # the int8 graphs the card names, checked; None: fp32
    if not learner and settings.backend != "torch" and (record := servedfiles.load(model_path, sha, facts.graphs)):
        # Made from this very file where it was trusted (`servedfiles`, run by deploy): a Space's first start.
        beside = servedfiles.prefix(model_path, sha)
        model = Predictor(record, settings.draft_jpeg, max_batch_size=settings.max_batch_size, onnx_cache=beside)
        print(f"Serving {model_path.name} from the served files beside it: {note}", file=sys.stderr)
        return model, facts
    onnx_cache = settings.cache / "onnx" / sha
    key = served.key(sha, facts.versions, facts.graphs)
    if not learner and settings.backend != "torch" and (record := served.load(onnx_cache, key)):
        # Written only after the checks below and `load_learner` passed for this file, card and environment.
        model = Predictor(record, settings.draft_jpeg, max_batch_size=settings.max_batch_size, onnx_cache=onnx_cache)
        print(f"Serving {model_path.name} from its cached ONNX graphs: {note}", file=sys.stderr)
        return model, facts
    # Before serving: refuse a model this Python or these libraries cannot run (the message says what to
    # set), and make one plain learn.predict in a child process, so a pickle that would crash at its first
    # prediction stops the start-up instead of the first visitor's request.
    # The verdict is remembered by the file's SHA-256 (and this environment's versions) in settings.cache, so
    # the child process runs once per model and environment, not at every start. Meanwhile this process imports
    # what unpickling will need (fastai, timm: seconds), and unpickles only once the child has answered.
    # On ZeroGPU the Space installs a torch from its list, which may not be the card's (spacetree.listed_torch);
    # `deploy --check` proved the model under it, so the check expects that one.
    versions, note = spacetree.installed_versions(facts.versions, spacetree.ZERO_GPU if settings.zero_gpu else None)
    if note:
        print(note, file=sys.stderr, flush=True)
    modelfile.startup_check(
        model_path,
        versions,
        Path(EXAMPLES[0]),
        expected_sha256=expected,
        cache=settings.cache,
        file_sha256=sha,
        meanwhile=lambda: modelfile.import_modules(model_path),
    )
    learn = modelfile.load(model_path, expected_sha256=expected, file_sha256=sha)
    model = Predictor(learn, settings.draft_jpeg, settings.backend, settings.max_batch_size, onnx_cache, int8)
    if record := model.served(key):
        served.save(onnx_cache, record)
    return model, facts


class Details(TypedDict):
    """The `details` output: the API contract programs parse (README, "Call the API")."""

    label: str | None  # the model's top class; None when the upload was refused
    confidence: float | None  # its probability
    out_of_domain: bool | None  # the guard flagged the photo: `label` means nothing then
    ood_score: float | None  # ImageNet probability mass outside the training photos' classes, 0..1
    error: str | None  # why the upload was refused, for the user; None when it was classified


@dataclass
class Answer:
    """One request's result in the three shapes the Interface outputs: (headline, probabilities) for
    `components.Probabilities`, a sentence for people, and `Details` for programs."""

    probabilities: tuple[str, dict[str, float]] | None
    message: str
    details: Details

    def as_outputs(self) -> tuple:
        return self.probabilities, self.message, self.details


class Answers:
    """The app's answers: each photo decoded by `decoders` (a worker process under a budget, charged to the
    client's share of decodes), classified by `model`, and remembered by the content's SHA-256, so the same
    photo sent again (by anyone) costs neither a decode nor a forward pass."""

    def __init__(self, model: Predictor, decoders: DecoderPool, quotas: Quotas, remembered: int = 4096):
        self.model, self.decoders, self.quotas, self.remembered = model, decoders, quotas, remembered
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, path: str | ImageError, client: str) -> Answer:
        """The answer for the uploaded file at `path` (or the refusal already decided)."""
        if isinstance(path, ImageError):
            return refusal(path)
        try:
            digest = files.sha256(path)
        except OSError:  # deleted since the upload (its lifetime, or the folder made room): not about the photo
            return refusal(ImageError(page.PHOTO_GONE))
        with self._lock:
            if (known := self._answers.get(digest)) is not None:
                self._answers.move_to_end(digest)
                return known
        if not self.quotas.spend("prediction", client):
            return refusal(ImageError(wait("prediction")))  # not remembered: it says nothing about the photo
        decoded = self.decoders.decode(path, client)
        answer = classify(self.model, decoded)
        if isinstance(decoded, NotThePhoto):
            return answer  # about this client or the server now, not about the photo: not remembered
        with self._lock:
            self._answers[digest] = answer
            while len(self._answers) > self.remembered:
                self._answers.popitem(last=False)
        return answer


def classify(model: Predictor, image: ImageInput | Decoded | ImageError | None) -> Answer:
    """One photo's answer; the requests that wait meanwhile share its forward pass (`Predictor`)."""
    result = model.predict_batch([image])[0]
    return refusal(result) if isinstance(result, ImageError) else format_answer(result)


def format_answer(prediction: Prediction) -> Answer:
    top = prediction.probabilities[prediction.label]
    vocab = list(prediction.probabilities)
    if prediction.out_of_domain:
        # The headline must not announce a class for a photo of something else: it says what the model cannot tell.
        headline = page.unknown_headline(vocab)
        message = page.unknown_message(prediction.label, top, vocab)
    elif close_call := unsure_between(prediction.probabilities):
        first, second = close_call
        headline = page.unsure_headline(first, second)
        message = page.unsure_message(first, prediction.probabilities[first], second, prediction.probabilities[second])
    else:
        headline = prediction.label
        message = page.verdict(prediction.label, top)
    details = Details(
        label=prediction.label,
        confidence=top,
        out_of_domain=prediction.out_of_domain,
        ood_score=round(prediction.ood_score, 4),
        error=None,
    )
    return Answer((headline, prediction.probabilities), message, details)


def unsure_between(probabilities: dict[str, float]) -> tuple[str, str] | None:
    """The two most probable classes when their probabilities are within `UNSURE_MARGIN`, else None."""
    first, second = sorted(probabilities, key=probabilities.get, reverse=True)[:2]
    return (first, second) if probabilities[first] - probabilities[second] < UNSURE_MARGIN else None


def refusal(error: ImageError) -> Answer:
    details = Details(label=None, confidence=None, out_of_domain=None, ood_score=None, error=str(error))
    return Answer(None, page.refusal(error), details)
