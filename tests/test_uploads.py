"""Uploaded photos are people's data: the server deletes them after BEAR_UPLOAD_TTL seconds."""

import shutil
import time

from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES, example
from tests.support.appserver import AppServer


def uploaded(server: AppServer, name: str) -> list:
    return list(server.upload_dir.rglob(name))


def test_uploads_are_deleted_after_their_time_to_live(tmp_path):
    server = AppServer(tmp_path, BEAR_UPLOAD_TTL="3")  # long enough to see the upload land first
    try:
        client = Client(server.url, verbose=False)
        photo = tmp_path / "my_private_bear.jpg"
        shutil.copy(example("black"), photo)
        assert client.predict(handle_file(str(photo)), api_name="/predict")[2]["label"] == "black"
        assert uploaded(server, photo.name), "the upload should be in Gradio's cache at first"
        deadline = time.monotonic() + 30
        while uploaded(server, photo.name) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not uploaded(server, photo.name)
        # The clickable examples must survive the clean-up, and the server goes on serving.
        assert all(uploaded(server, path.name) for path in EXAMPLES.glob("*.jpg"))
        assert client.predict(handle_file(str(example("teddy"))), api_name="/predict")[2]["label"] == "teddy"
    finally:
        server.stop()
