"""The page as a visitor sees it: Debian's Chromium, driven by Playwright, against `python app.py`.
Screenshots land in test-artifacts/."""

import hashlib
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from bear_classifier.web import feedback
from bear_classifier.web.components import WRONG_ANSWER
from tests.conftest import EXAMPLES_DIR, example

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TIMEOUT_MS = 60_000  # an answer can take seconds on a loaded 2-core machine
# `page.set_default_timeout` does not reach `expect`, which gives up after 5 s by default.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


def open_app(page, server):
    """Load the page and wait until Gradio has mounted the whole Interface, instead of racing it:
    the file input attached, every example shown, Submit enabled."""
    page.goto(server.url)
    expect(page.get_by_text("Grizzly, black or teddy?")).to_be_visible()
    expect(page.locator("input[type='file']").first).to_be_attached()
    expect(examples(page)).to_have_count(len(list(EXAMPLES_DIR.glob("*.jpg"))))
    for i in range(examples(page).count()):
        expect(examples(page).nth(i)).to_be_enabled()
    expect(submit(page)).to_be_enabled()


def examples(page):
    return page.locator(".gallery-item").filter(has=page.locator("img"))


def submit(page):
    return page.get_by_role("button", name="Submit", exact=True)


def input_preview(page, name: str):
    """The input's preview of a photo: shown once the upload (or the example's file) reached the server."""
    return page.locator(f"[data-testid='image'] img[src*='gradio_api/file='][src$='/{name}']")


def upload(page, path: Path) -> None:
    page.locator("input[type='file']").first.set_input_files(str(path))
    expect(input_preview(page, path.name)).to_be_visible()  # Submit before this would send no photo


def result_label(page):
    return page.locator("[data-testid='label-output-value']")


def test_click_an_example(page, server, artifacts):
    open_app(page, server)
    examples(page).first.click()
    expect(input_preview(page, "black_bear.jpg")).to_be_visible()  # examples are listed alphabetically
    submit(page).click()
    expect(result_label(page)).to_contain_text("black")
    page.screenshot(path=artifacts / "example_clicked.png", full_page=True)


def test_upload_a_photo(page, server, artifacts):
    open_app(page, server)
    upload(page, example("grizzly"))
    submit(page).click()
    expect(result_label(page)).to_contain_text("grizzly")
    expect(page.get_by_text("Probabilities")).to_be_visible()
    page.screenshot(path=artifacts / "upload_grizzly.png", full_page=True)


def test_out_of_domain_warning_is_shown(page, server, artifacts):
    open_app(page, server)
    upload(page, EXAMPLES_DIR / "cat.jpg")
    submit(page).click()
    expect(page.get_by_text("does not look like any photo")).to_be_visible()
    # The headline in large type says what the model cannot tell, instead of announcing "teddy" for a cat.
    expect(result_label(page)).to_have_text(re.compile(r"^\s*Not a black / grizzly / teddy\?\s*$"))
    page.screenshot(path=artifacts / "out_of_domain.png", full_page=True)


def test_flag_a_wrong_answer_stores_it_for_review(page, server, artifacts, tmp_path):
    def rows() -> list[dict]:
        return feedback.flags(server.review_dir)

    # A photo no other test flagged (flags are de-duplicated by content): the teddy example, new bytes after its end.
    photo = tmp_path / "teddy_bear.jpg"
    photo.write_bytes(example("teddy").read_bytes() + uuid.uuid4().bytes)
    open_app(page, server)
    upload(page, photo)
    submit(page).click()
    expect(result_label(page)).to_contain_text("teddy")
    before = len(rows())  # other tests may have flagged on this server: this click must add exactly one row
    page.get_by_role("button", name="Wrong: it is a black").click()

    deadline = time.monotonic() + TIMEOUT_MS / 1000  # the flag is written by the server after the click returns
    while len(rows()) == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert len(rows()) == before + 1
    row = rows()[-1]
    assert row["correction"] == "black"  # the user's correction
    assert row["label"] == "teddy"  # the model's answer, as the server recorded it
    assert row["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()  # the photo sent
    assert (server.review_dir / row["image"]).is_file()
    assert feedback.reviewed_images(server.review_dir)[-1][1] == "black"
    expect(page.get_by_text("stored for review")).to_be_visible()  # the page says what happened, in words
    page.screenshot(path=artifacts / "flagged.png", full_page=True)
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text("stored for review")).to_have_count(0)  # the note belongs to that answer


def wrong_answer_buttons(page):
    """By class: hidden buttons are not in the accessibility tree that `get_by_role` searches."""
    return page.locator(f"button.{WRONG_ANSWER}", has_text=re.compile(r"^\s*Wrong: "))


def rendered_fonts(page, selector: str) -> list[list[dict]]:
    """The fonts Chromium actually drew each element matching `selector` with (after any fallback)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    nodes = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]
    fonts = [cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"] for node in nodes]
    cdp.detach()
    return fonts


def test_before_an_answer_no_wrong_buttons_and_emphasis_is_not_larger(page, server, artifacts):
    open_app(page, server)
    expect(wrong_answer_buttons(page)).to_have_count(4)
    for i in range(4):
        expect(wrong_answer_buttons(page).nth(i)).to_be_hidden()  # nothing to correct yet
    page.evaluate("document.fonts.ready")
    emphasis = ".prose strong, .prose em"
    sizes = page.eval_on_selector_all(
        emphasis, "all => all.map(e => [getComputedStyle(e).fontSize, getComputedStyle(e.parentElement).fontSize])"
    )
    assert len(sizes) >= 3 and all(own == around for own, around in sizes), sizes
    # The same size can still look larger: a weight the page's font lacks is drawn in a system font.
    for fonts in rendered_fonts(page, emphasis):
        assert fonts and all(font["isCustomFont"] for font in fonts), fonts
    page.screenshot(path=artifacts / "before_answer.png", full_page=True)


@pytest.mark.parametrize(
    "name, headline",
    [
        ("black_bear.jpg", "black"),
        ("grizzly_bear.jpg", "grizzly"),
        ("teddy_bear.jpg", "teddy"),
        ("cat.jpg", "Not a black / grizzly / teddy?"),
    ],
)
def test_each_example_answered_then_cleared(page, server, artifacts, name, headline):
    open_app(page, server)
    examples(page).nth(sorted(p.name for p in EXAMPLES_DIR.glob("*.jpg")).index(name)).click()
    expect(input_preview(page, name)).to_be_visible()
    submit(page).click()
    expect(result_label(page)).to_have_text(re.compile(rf"^\s*{re.escape(headline)}\s*$"))
    for i in range(4):
        expect(wrong_answer_buttons(page).nth(i)).to_be_visible()  # now there is an answer to correct
    page.screenshot(path=artifacts / f"answer_{Path(name).stem}.png", full_page=True)
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(result_label(page)).to_have_count(0)
    for i in range(4):
        expect(wrong_answer_buttons(page).nth(i)).to_be_hidden()


def test_the_api_page_describes_an_upload(page, server, artifacts):
    open_app(page, server)
    page.get_by_role("button", name=re.compile("Use via API")).click()
    expect(page.get_by_text("/predict").first).to_be_visible()
    expect(page.get_by_text("publicly available")).to_have_count(0)
    expect(page.get_by_text(re.compile("uploaded to this server")).first).to_be_visible()
    expect(page.get_by_text("handle_file('black_bear.jpg')")).to_be_visible()  # a local file (the first example)
    page.screenshot(path=artifacts / "api_page.png", full_page=True)
