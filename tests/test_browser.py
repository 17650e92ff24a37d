"""The page as a visitor sees it: Debian's Chromium, driven by Playwright, against `python app.py`.
Screenshots land in test-artifacts/."""
import csv
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from bear_classifier import feedback
from tests.conftest import EXAMPLES, example

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def open_app(page, server):
    page.goto(server.url)
    expect(page.get_by_text("Grizzly, black or teddy?")).to_be_visible()


def result_label(page):
    return page.locator("[data-testid='label-output-value']")


def test_click_an_example(page, server, artifacts):
    open_app(page, server)
    page.locator(".gallery-item, [data-testid='examples'] button").filter(has=page.locator("img")).first.click()
    page.get_by_role("button", name="Submit").click()
    expect(result_label(page)).to_contain_text("black")  # examples are listed alphabetically
    page.screenshot(path=artifacts / "example_clicked.png", full_page=True)


def test_upload_a_photo(page, server, artifacts):
    open_app(page, server)
    page.locator("input[type='file']").first.set_input_files(str(example("grizzly")))
    page.get_by_role("button", name="Submit").click()
    expect(result_label(page)).to_contain_text("grizzly")
    expect(page.get_by_text("Probabilities")).to_be_visible()
    page.screenshot(path=artifacts / "upload_grizzly.png", full_page=True)


def test_out_of_domain_warning_is_shown(page, server, artifacts):
    open_app(page, server)
    page.locator("input[type='file']").first.set_input_files(str(EXAMPLES / "cat.jpg"))
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("does not look like any photo")).to_be_visible()
    page.screenshot(path=artifacts / "out_of_domain.png", full_page=True)


def test_flag_a_wrong_answer_stores_it_for_review(page, server):
    open_app(page, server)
    page.locator("input[type='file']").first.set_input_files(str(example("teddy")))
    page.get_by_role("button", name="Submit").click()
    expect(result_label(page)).to_contain_text("teddy")
    page.get_by_role("button", name="Wrong: it is a black bear").click()

    table = server.review_dir / "dataset1.csv"
    for _ in range(50):  # the flag is written by the server after the click returns
        if table.exists() and len(list(csv.reader(table.open()))) >= 2:
            break
        page.wait_for_timeout(200)
    header, *rows = list(csv.reader(table.open()))
    row = dict(zip(header, rows[-1]))
    assert row["flag"] == "black"  # the user's correction
    assert '"label": "teddy"' in row["Details"]  # the model's answer
    assert Path(row["Photo of a bear"]).read_bytes() == example("teddy").read_bytes()
    assert feedback.reviewed_images(server.review_dir)[-1][1] == "black"
