"""Holes an attacker's-eye review of issues 27/28/31 found, each closed: examples that a re-upload of their own
bytes could delete, refused uploads left on disk for the whole lifetime, a photo deleted before its turn, upload ids
as a memory sink, a body of the wrong shape answered as if it were not JSON, and an eviction whose delete failed."""

import time

import httpx

from bear_classifier import page, serving
from bear_classifier.model.images import ImageError
from bear_classifier.web import uploads
from tests.conftest import example


def test_an_example_s_own_path_is_never_recorded_as_an_upload(tmp_path):
    cached = tmp_path / "abc" / "teddy_bear.jpg"  # where Gradio cached the example, and where its bytes upload to
    cached.parent.mkdir()
    cached.write_bytes(example("teddy").read_bytes())
    folder = uploads.UploadFolder(tmp_path, max_bytes=10 * 2**20, ttl=600, keep=lambda: {str(cached)}, unused_ttl=1)
    folder.add("198.51.100.7", str(cached))
    assert folder.used_bytes() == 0  # not the client's: neither its share nor the sweep may delete it
    with folder.upload("198.51.100.7", 10 * 2**20) as refusal:  # a client's upload that fills the whole folder
        assert refusal is None
    folder.sweep()
    assert cached.is_file()


def test_a_refused_upload_s_leftover_goes_once_no_upload_can_be_in_flight(tmp_path, monkeypatch):
    leftover = tmp_path / "def" / "refused.jpg"  # Gradio stored it, then answered 400: never recorded
    leftover.parent.mkdir()
    leftover.write_bytes(b"x" * 1024)
    folder = uploads.UploadFolder(tmp_path, max_bytes=2**20, ttl=600)
    folder.sweep()
    assert leftover.is_file()  # an upload may still be in flight
    now = time.time()
    monkeypatch.setattr(uploads.time, "time", lambda: now + uploads.UPLOAD_SECONDS + 31)
    folder.sweep()
    assert not leftover.exists()  # long before the 600 s lifetime


def test_a_photo_deleted_before_its_turn_is_a_refusal_in_words(tmp_path):
    answers = serving.Answers(model=None, decoders=None, quotas=None)  # nothing past the hash is reached
    answer = answers.answer(str(tmp_path / "gone.jpg"), "198.51.100.7")
    assert answer.details["error"] == page.PHOTO_GONE
    assert isinstance(answers.answer(ImageError("refused before"), "x").details["error"], str)


def test_upload_ids_and_body_shapes_are_checked_in_the_raw_protocol(server):
    api = server.url.rstrip("/") + "/gradio_api"
    photo = {"files": ("t.jpg", example("teddy").read_bytes(), "image/jpeg")}
    long_id = httpx.post(api + "/upload", params={"upload_id": "u" * 65}, files=photo)
    assert long_id.status_code == 400 and "upload_id" in long_id.text
    assert httpx.post(api + "/upload", params={"upload_id": "u" * 64}, files=photo).status_code == 200
    # Well-formed JSON of the wrong shape is not "not JSON": 422, and it says which route.
    wrong = httpx.post(api + "/queue/join", json={"data": "not a list", "fn_index": "x", "session_hash": 5})
    assert wrong.status_code == 422 and "/queue/join" in wrong.text
    assert httpx.post(api + "/queue/join", content=b"{not json").status_code == 400


def test_an_eviction_whose_delete_fails_keeps_no_reservation(tmp_path):
    """The files an upload evicts are deleted after the lock; an unlink error there (a mounted bucket's, here a
    directory where the file was) escaped after the upload's bytes were reserved, and kept them reserved for good."""
    first = tmp_path / "abc" / "a.jpg"
    first.parent.mkdir()
    first.write_bytes(b"x" * 600 * 1024)
    folder = uploads.UploadFolder(tmp_path, max_bytes=2**20, ttl=600, share=1.0)
    folder.add("198.51.100.7", str(first))
    first.unlink()
    first.mkdir()  # unlink() now fails with IsADirectoryError
    with folder.upload("198.51.100.8", 600 * 1024) as refusal:  # makes room: the first file is evicted
        assert refusal is None
    assert folder.used_bytes() == 0
    with folder.upload("198.51.100.8", 2**20) as refusal:  # the whole folder is free again
        assert refusal is None
