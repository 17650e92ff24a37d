"""Web image gathering, offline: the real downloader fetches from a loopback server that plays the
web; only the search call (DuckDuckGo) is replaced, since it needs the internet."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from bear_classifier.training import data, search
from tests.support import hard_inputs


def photo(shade: int, fmt: str = "JPEG") -> bytes:
    return hard_inputs.encode(Image.new("RGB", (90, 70), (shade, 60, 30)), fmt)


PAGES = {
    "/grizzly1.jpg": photo(10),
    "/grizzly2.png": photo(20, "PNG"),
    "/black1.jpg": photo(30),
    "/black2.png": photo(40, "PNG"),
    "/good1.jpg": photo(50),
    "/page.jpg": b"<html>this is a web page, not a photo</html>",
    "/cut.jpg": hard_inputs.truncated_jpeg(),
}


class FakeWeb(BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWeb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_gather_downloads_then_verify_cleans(tmp_path, web):
    asked = []

    def fake_search(term, n):
        asked.append((term, n))
        label = term.split()[0]
        return [
            f"{web}{path}" for path in [f"/{label}1.jpg", f"/{label}2.png", "/page.jpg", "/cut.jpg", "/missing.jpg"]
        ]

    counts = search.gather(
        tmp_path, {"grizzly": "grizzly bear", "black": "black bear"}, per_term=10, search=fake_search
    )

    assert asked == [("grizzly bear", 10), ("black bear", 10)]
    assert counts == {"grizzly": 4, "black": 4}  # the 404 leaves no file
    report = data.verify_folder(tmp_path, delete=True)
    assert report.counts == {"black": 2, "grizzly": 2}
    assert len(report.dropped["not a readable image"]) == 4  # the web page and the cut JPEG, twice
    assert sum(1 for _ in tmp_path.rglob("*") if _.is_file()) == 4


def test_a_failing_search_leaves_that_label_empty(tmp_path, web, capsys):
    def flaky_search(term, n):
        if term == "teddy bear":
            raise ConnectionError("rate limited")
        return [f"{web}/good1.jpg"]

    counts = search.gather(tmp_path, {"teddy": "teddy bear", "black": "black bear"}, search=flaky_search)
    assert counts == {"teddy": 0, "black": 1}
    assert "search for 'teddy bear' failed: rate limited" in capsys.readouterr().out


def test_per_term_caps_downloads(tmp_path, web):
    counts = search.gather(tmp_path, {"a": "a"}, per_term=1, search=lambda term, n: [f"{web}/good1.jpg"] * 5)
    assert counts == {"a": 1}


def test_when_every_search_fails_it_says_so_and_leaves_no_empty_folders(tmp_path):
    """Offline: an empty data folder left behind would make the next run skip the download."""

    def offline(term, n):
        raise ConnectionError("no route to host")

    with pytest.raises(data.DataError, match="downloaded no photos .* internet connection"):
        search.gather(tmp_path / "bears", search=offline)
    assert not (tmp_path / "bears").exists()
