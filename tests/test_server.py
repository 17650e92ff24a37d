"""`python app.py` on a loopback port, called the way API users call it: `gradio_client`."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import handle_file

from tests.conftest import EXAMPLES, example
from tests.support import hard_inputs

VOCAB = ["black", "grizzly", "teddy"]


def call(client, path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def test_predict_endpoint_is_documented(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert "/predict" in info["named_endpoints"]


@pytest.mark.parametrize("label", VOCAB)
def test_single_call(client, label):
    probabilities, message, details = call(client, example(label))
    assert probabilities["label"] == label
    assert sorted(c["label"] for c in probabilities["confidences"]) == VOCAB
    assert sum(c["confidence"] for c in probabilities["confidences"]) == pytest.approx(1, abs=1e-4)
    assert details == {**details, "label": label, "out_of_domain": False, "error": None}
    assert label in message


def test_out_of_domain_is_reported(client):
    _, message, details = call(client, EXAMPLES / "coffee_cup.jpg")
    assert details["out_of_domain"] is True
    assert "does not look like" in message


def test_concurrent_calls_each_get_their_own_answer(callers):
    labels = VOCAB * 4
    with ThreadPoolExecutor(max_workers=len(labels)) as pool:
        results = list(pool.map(lambda label: call(callers, example(label)), labels))
    assert [details["label"] for _, _, details in results] == labels


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.jpg", b""),
        ("notes.txt", b"I am text, not a photo"),
        ("cut.jpg", hard_inputs.truncated_jpeg()),
        ("bomb.png", hard_inputs.decompression_bomb()),
        ("garbage.jpg", bytes(range(256)) * 50),
    ],
)
def test_bad_uploads_get_a_clear_message_and_the_server_goes_on(client, server, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    _, message, details = call(client, bad)
    assert details["error"] and details["label"] is None
    assert message.startswith("**Could not classify this upload.**")
    assert server.alive()
    assert call(client, example("teddy"))[2]["label"] == "teddy"


@pytest.mark.parametrize(
    "name, content",
    [
        ("rotated.jpg", hard_inputs.exif_rotated()),
        ("rgba.png", hard_inputs.in_mode("RGBA")),
        ("palette.png", hard_inputs.in_mode("P")),
        ("grey.png", hard_inputs.in_mode("L")),
        ("cmyk.tif", hard_inputs.in_mode("CMYK")),
        ("deep.png", hard_inputs.in_mode("I;16")),
        ("phone.jpg", hard_inputs.phone_photo()),
    ],
)
def test_odd_but_valid_images_are_classified(client, tmp_path, name, content):
    odd = tmp_path / name
    odd.write_bytes(content)
    probabilities, _, details = call(client, odd)
    assert details["error"] is None and details["label"] in VOCAB
    assert len(probabilities["confidences"]) == 3


def test_a_bad_upload_does_not_spoil_the_batch_it_shares(callers, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    paths = [example("grizzly"), bad, example("black"), bad, example("teddy")] * 2
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        results = list(pool.map(lambda path: call(callers, path), paths))
    for path, (_, _, details) in zip(paths, results):
        if path == bad:
            assert details["error"]
        else:
            assert details["label"] == path.stem.split("_")[0]


def test_upload_size_limit(client, tmp_path):
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8" + b"\0" * (11 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the limit the server advertises
        call(client, huge)
    assert call(client, example("black"))[2]["label"] == "black"
