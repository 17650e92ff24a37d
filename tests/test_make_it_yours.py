"""README's "Make it yours", run as a student would on a copy of the project, for photos that are not bears
(tests/fixtures/fruit: bananas, lemons, pineapples): afterwards "bear" appears nowhere a visitor, an API caller or
a reader of the card or the Space looks. The package's own name (`bear_classifier`, the code that runs, and the key
its facts sit under in the card) is left out of the search: it names the code, not the photos.

A few minutes of CPU: tiny images, 10 a class, the zero-shot recipe (nothing trained).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from gradio_client import Client, handle_file
from playwright.sync_api import expect, sync_playwright

from bear_classifier.settings import ROOT
from bear_classifier.ship import deploy
from tests.support.appserver import AppServer
from tests.test_browser import CHROMIUM_FLAGS, TIMEOUT_MS, examples, input_preview, result_label, submit

FRUIT = ROOT / "tests" / "fixtures" / "fruit"
SUBJECT = {
    "subject": "fruit",
    "title": "Banana, lemon or pineapple?",
    "description": "Tells bananas, lemons and pineapples apart.",
    "emoji": "🍌",
}
PROJECT = ("app.py", ".gitattributes", "requirements.txt", "training.ipynb", "space", "examples", "bear_classifier")
"""What a student's copy of the project needs for the five steps (a clone holds more; nothing else is read)."""


def bear_free(text: str, where: str) -> None:
    found = re.search(r".{0,60}bear.{0,60}", text.replace("bear_classifier", ""), re.IGNORECASE | re.DOTALL)
    assert found is None, f"{where} says {found[0]!r}"


def words(data: object) -> list[str]:
    """Every value in parsed YAML or JSON (not the keys)."""
    if isinstance(data, dict):
        return [w for value in data.values() for w in words(value)]
    if isinstance(data, list):
        return [w for value in data for w in words(value)]
    return [str(data)]


def run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def fork(tmp_path_factory) -> Path:
    """README's steps 1-4 in a copy of the project: photos in data/fruit/<label>/, the subject parameters, train
    (and write the examples), promote, write the Space's tree (deploy's tree writer: nothing is sent)."""
    project = tmp_path_factory.mktemp("fork") / "fruit-classifier"
    project.mkdir()
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))
        else:
            shutil.copy2(source, project / name)
    shutil.copytree(FRUIT, project / "data" / "fruit")  # step 1
    parameters = {
        "data_dir": "data/fruit",
        **SUBJECT,
        "recipes": [],  # the zero-shot reading alone, at the fixture's size: nothing trained
        "zero_shot_sizes": [128],
        "max_per_class": 10,
        "image_size": 128,
        "batch_size": 8,
        "write_examples": True,
    }
    notebook = [sys.executable, "-m", "bear_classifier.training.notebook"]
    for name, value in parameters.items():
        notebook += ["-p", name, str(value)]
    run(notebook, project)  # steps 2 and 3
    run([sys.executable, "-m", "bear_classifier.training.promote", "runs/latest"], project)  # step 4
    run(
        [sys.executable, "-m", "bear_classifier.ship.deploy", "--out", "build/space"], project
    )  # step 5, without sending
    return project


@pytest.fixture(scope="module")
def served(fork, tmp_path_factory):
    running = AppServer(tmp_path_factory.mktemp("fork-server"), app_dir=fork / "build" / "space")
    yield running
    running.stop()


def test_the_examples_are_the_students_own(fork):
    names = sorted(p.name for p in (fork / "examples").glob("*.jpg"))
    assert names and all(deploy.example_class(name, ["banana", "lemon", "pineapple"]) for name in names), names
    assert "Written by training.ipynb" in (fork / "examples" / "ATTRIBUTION.md").read_text()


def test_the_card_and_the_space_say_nothing_of_bears(fork):
    text = (fork / "model_card.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    bear_free(body, "the card")
    values = yaml.safe_load(front)
    bear_free(" ".join(words(values)), "the card's front matter")  # its values: its keys are the file format
    assert values["bear_classifier"]["subject"] == "fruit" and values["bear_classifier"]["title"] == SUBJECT["title"]
    tree = fork / "build" / "space"
    bear_free((tree / "README.md").read_text(encoding="utf-8"), "the Space's README")
    bear_free(" ".join(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()), "the Space's files")


def test_the_verdicts_and_the_api_say_nothing_of_bears(served, fork):
    with urllib.request.urlopen(served.url + "gradio_api/info", timeout=30) as response:
        bear_free(response.read().decode(), "/gradio_api/info")
    client = Client(served.url, verbose=False)
    bear_free(json.dumps(client.view_api(print_info=False, return_format="dict")), "view_api")
    answers = {}
    for photo in sorted((fork / "examples").glob("*.jpg")):
        probabilities, verdict, details = client.predict(handle_file(str(photo)), api_name="/predict")
        bear_free(json.dumps([probabilities, verdict, details]), f"the answer for {photo.name}")
        answers[photo.name] = {c["label"]: c["confidence"] for c in probabilities["confidences"]}
    deploy.check_examples(answers, ["banana", "lemon", "pineapple"])  # what deploy --check asks of the examples


def test_the_page_says_nothing_of_bears(served, artifacts):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(served.url)  # on a server with the default shares: a page load is a dozen requests at once
        expect(page.get_by_text(SUBJECT["title"]).first).to_be_visible()
        expect(submit(page)).to_be_enabled()
        bear_free(page.title() + page.inner_text("body"), "the page")
        examples(page).first.click()
        expect(input_preview(page, "banana.jpg")).to_be_visible()
        submit(page).click()
        expect(result_label(page)).to_contain_text("banana")
        page.get_by_role("button", name="Wrong: it is a lemon").click()
        expect(page.get_by_text("stored for review")).to_be_visible()
        bear_free(page.inner_text("body"), "the page with an answer")
        page.screenshot(path=artifacts / "fork_page.png", full_page=True)
        page.get_by_role("button", name=re.compile("Use via API")).click()
        expect(page.get_by_text("/predict").first).to_be_visible()
        bear_free(page.inner_text("body"), "the API page")
        page.screenshot(path=artifacts / "fork_api_page.png", full_page=True)
        browser.close()
