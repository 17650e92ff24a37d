"""The app under the environment a Space gives it (`spacecheck.SPACE_VARIABLES`: SYSTEM=spaces, SPACE_ID, ...,
and Gradio's Space defaults, cached examples and SSR, which app.py turns off), spoken to in Gradio's raw protocol;
and `python app.py` as a student runs it locally, scripted through gradio_client."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bear_classifier.ship import spacecheck
from bear_classifier.web import feedback
from tests.conftest import example
from tests.support import rawcaller
from tests.support.appserver import AppServer


@pytest.fixture(scope="module")
def space_server(tmp_path_factory):
    running = AppServer(tmp_path_factory.mktemp("space"), **spacecheck.SPACE_VARIABLES)
    yield running
    running.stop()


def test_an_example_clicked_on_a_space_can_be_flagged(space_server):
    """With Gradio's Space default a cached example never reached classify_image, so its flag was refused."""
    page = rawcaller.RawCaller(space_server.url)
    loaded = page.http.post(
        page.api + "/run/predict",
        json={"data": [0], "fn_index": page.fn_index["load_example"], "session_hash": page.session},
    )
    updates = loaded.raise_for_status().json()["data"]
    # Only the photo is filled in: a cached example would also fill the outputs (Gradio's answer at start-up)
    # and the page would show them without calling classify_image.
    assert len(updates) == 1
    photo = updates[0]["value"]
    outcome = page.predict(photo)
    assert outcome.success, outcome.error
    assert page.flag_stored(photo, button=1)
    assert len(feedback.flags(space_server.review_dir)) == 1


def test_on_a_space_run_history_and_ssr_are_off(space_server):
    assert httpx.get(space_server.url + "gradio_api/runs").status_code == 404
    config = httpx.get(space_server.url + "config").json()
    assert not config.get("run_history") and not config.get("is_ssr", False)
    assert "client address: X-Forwarded-For 0 entries" in space_server.output()  # the first requests' shapes


def test_on_a_space_the_forwarded_client_is_charged(space_server):
    """app.py hands BEAR_TRUSTED_PROXIES to uvicorn: behind the SSR proxy (a 127.0.0.1 peer) and a platform hop,
    the visitor's address is the client, not the proxy's and not the caller's own leading entry."""
    visitor = "203.0.113.7"
    forwarded = {"X-Forwarded-For": f"198.51.100.1, {visitor}, 10.0.0.2"}
    response = httpx.post(
        space_server.url + "gradio_api/upload",
        files=[("files", ("b.jpg", example("black").read_bytes()))],
        headers=forwarded,
    )
    assert response.status_code == 200
    digest = hashlib.sha256(visitor.encode()).hexdigest()[:8]
    assert f"X-Forwarded-For 3 entries in 1 lines, X-IP-Token absent, client #{digest}" in space_server.output()


@pytest.mark.timeout(1800)
def test_locally_one_user_scripting_200_photos_is_answered_every_time(tmp_path):
    """As a student tries it: `python app.py` with no settings, 200 different photos from one address."""
    server = AppServer(tmp_path)
    try:
        source = Image.open(example("grizzly")).convert("RGB")
        client = Client(server.url, verbose=False)
        refused = []
        for i in range(200):
            path = tmp_path / f"photo_{i}.jpg"
            source.crop((i, i % 7, source.width - i % 5, source.height)).save(path, quality=85)
            _, _, details = client.predict(handle_file(str(path)), api_name="/predict")
            if details.get("error"):
                refused.append(details["error"])
        assert refused == []
        assert "decoder workers" in server.output()  # start-up states the machine
    finally:
        server.stop()
