"""Uploaded photos are people's data: the server deletes them after BEAR_UPLOAD_TTL seconds, and all of them,
with the folder, when it stops."""

import shutil
import signal
import time

import pytest
from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES_DIR, example
from tests.support import rawcaller
from tests.support.appserver import AppServer


def uploaded(server: AppServer, name: str) -> list:
    return list(server.upload_dir.rglob(name))


def test_uploads_are_deleted_after_their_time_to_live(tmp_path):
    """Timed from the upload itself, not from an answer that a slow machine may give after the lifetime: the photo
    is there once uploaded, outlives none of its 3 s by much, and goes no sooner."""
    ttl = 3
    server = AppServer(tmp_path, BEAR_UPLOAD_TTL=str(ttl))
    try:
        caller = rawcaller.RawCaller(server.url)
        sent = time.monotonic()
        photo = caller.uploaded("my_private_bear.jpg", example("black").read_bytes())
        seen = bool(uploaded(server, "my_private_bear.jpg"))
        assert seen or time.monotonic() - sent >= ttl, "the upload should be in Gradio's cache at first"
        assert caller.predict(photo).data[2]["label"] == "black" or time.monotonic() - sent >= ttl
        while uploaded(server, "my_private_bear.jpg") and time.monotonic() - sent < 30:
            time.sleep(0.1)
        gone = time.monotonic() - sent
        assert ttl <= gone < 30, gone
        # The clickable examples must survive the clean-up, and the server goes on serving.
        assert all(uploaded(server, path.name) for path in EXAMPLES_DIR.glob("*.jpg"))
        client = Client(server.url, verbose=False)
        assert client.predict(handle_file(str(example("teddy"))), api_name="/predict")[2]["label"] == "teddy"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "how, folder_given",
    [(signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGTERM, GRADIO_TEMP_DIR set", "SIGINT (Ctrl-C), a folder of its own"],
)
def test_the_upload_folder_is_deleted_when_the_app_stops(tmp_path, how, folder_given):
    system_temp = tmp_path / "tmp"  # where the app makes its own folder when GRADIO_TEMP_DIR is not set
    system_temp.mkdir()
    env = {"TMPDIR": str(system_temp)} | ({} if folder_given else {"GRADIO_TEMP_DIR": ""})
    server = AppServer(tmp_path, **env)
    try:
        photo = tmp_path / "my_private_bear.jpg"
        shutil.copy(example("grizzly"), photo)
        assert (
            Client(server.url, verbose=False).predict(handle_file(str(photo)), api_name="/predict")[2]["error"] is None
        )
        folder = server.upload_dir if folder_given else next(system_temp.glob("bear-classifier-uploads-*"))
        assert list(folder.rglob(photo.name)), "the upload should be in the folder while the app runs"
    finally:
        server.stop(how)
    assert server.process.returncode == 0, server.output()
    assert not folder.exists()
    assert not list(system_temp.glob("bear-classifier-uploads-*"))
