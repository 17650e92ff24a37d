"""The words: from the card's subject and classes, never "raccoon bear"; an old card reads as the bear classifier."""

import dataclasses

from bear_classifier import page, serving
from bear_classifier.model import card
from bear_classifier.model.predictor import Prediction
from bear_classifier.training import card_writer

FORK = card.Subject("pet", "Cat, dog or raccoon?", "Tells cats, dogs and raccoons apart.", "🦝")


def test_a_card_written_before_the_subject_travelled_reads_as_bears(tmp_path):
    lines = serving.CARD_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    old = [line for line in lines if not line.startswith(("  subject:", "  title:", "  description:", "  emoji:"))]
    assert len(lines) - len(old) == 4  # the committed card holds the subject facts
    (tmp_path / "model_card.md").write_text("".join(old), encoding="utf-8")
    assert card.Subject.of(card.read(tmp_path / "model_card.md")) == card.BEARS


def test_the_subject_travels_in_the_card_and_back(tmp_path):
    facts = dataclasses.replace(card.read(serving.CARD_PATH), vocab=["cat", "dog", "raccoon"], **vars(FORK))
    read = card.read(card_writer.write(facts, tmp_path / "model_card.md"))
    assert card.Subject.of(read) == FORK
    assert read.subject == "pet" and "pet-classifier" in (tmp_path / "model_card.md").read_text(encoding="utf-8")


def test_a_class_name_is_never_followed_by_the_noun():
    vocab = ["cat", "dog", "raccoon"]
    sure = serving.format_answer(Prediction("raccoon", {"cat": 0.02, "dog": 0.01, "raccoon": 0.97}, False, 0.1))
    assert sure.message == "**raccoon** (97%)."
    unknown = serving.format_answer(Prediction("dog", {"cat": 0.3, "dog": 0.4, "raccoon": 0.3}, True, 0.9))
    assert unknown.probabilities[0] == "Not a cat / dog / raccoon?"
    assert "(it knows only cat, dog and raccoon)" in unknown.message
    assert page.flag_options(vocab) == [
        ("Wrong: it is a cat", "cat"),
        ("Wrong: it is a dog", "dog"),
        ("Wrong: it is a raccoon", "raccoon"),
        ("Wrong: none of these", page.NONE_OF_THESE),
    ]
    assert page.upload_label(card.Subject("apple")) == "Photo of an apple"


def test_the_space_gets_a_short_description_the_hub_accepts():
    assert page.short_description(FORK) == FORK.description
    wordy = card.Subject("pet", "Cat, dog or raccoon? " * 4, "x" * 61)
    assert len(page.short_description(wordy)) <= 60 and page.short_description(wordy).endswith("…")
    assert page.space_front_matter(FORK)["tags"][-1] == "pet"


def test_the_article_names_what_the_guard_was_measured_to_flag():
    facts = card.read(serving.CARD_PATH)
    text = " ".join(page.article(facts).split())
    mugs = f"{facts.not_bears_flagged['google_mugs']:.0%} of {facts.n_not_bears['google_mugs']} photos in `google_mugs`"
    assert mugs in text  # the card's own measured folder, not a fixed list
    unmeasured = " ".join(page.article(dataclasses.replace(facts, not_bears_flagged={}, n_not_bears={})).split())
    assert "was not measured" in unmeasured and "google_mugs" not in unmeasured


def sentences_outside_page(path) -> list[str]:
    """The sentences a module writes itself (string literals that start with a capitalised word and a space), leaving
    out docstrings and what it prints for whoever runs the server."""
    import ast
    import re

    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Constant, ast.JoinedStr)):
            skipped.add(id(node.value))  # a docstring, or a string standing alone
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            skipped.update(id(n) for arg in node.args for n in ast.walk(arg))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(p.value for p in node.values if isinstance(p, ast.Constant))
        else:
            continue
        if re.match(r"[A-Z][a-z]+ \w", text):
            found.append(f"{path.name}:{node.lineno}: {text[:60]}")
    return found


def test_the_request_path_writes_no_words_of_its_own():
    """Issue 29: of the serving side, only page.py writes what a visitor or an API caller reads (the input gate's
    errors, in model/images.py and model/decoding.py, are shared with the batch command and the notebook)."""
    from tests.conftest import ROOT

    modules = [*sorted((ROOT / "bear_classifier" / "web").glob("*.py")), *(ROOT / "bear_classifier").glob("[sl]*.py")]
    assert {p.name for p in modules} >= {"limits.py", "clients.py", "uploads.py", "serving.py", "launch.py"}
    assert [s for p in modules for s in sentences_outside_page(p)] == []
    assert sentences_outside_page(ROOT / "bear_classifier" / "page.py")  # the scan finds words where they are
