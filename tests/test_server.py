"""`python app.py` on a loopback port, called the way API users call it: `gradio_client`."""

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import handle_file

from bear_classifier import serving
from bear_classifier.page import UPLOAD_DESCRIPTION
from tests.conftest import EXAMPLES_DIR, example
from tests.support import hard_inputs
from tests.support.appserver import ROOT

VOCAB = ["black", "grizzly", "teddy"]


def call(client, path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def test_predict_endpoint_is_documented(client):
    info = client.view_api(print_info=False, return_format="dict")
    assert "/predict" in info["named_endpoints"]


def test_the_api_page_describes_the_photo_as_an_upload(client):
    """The "Use via API" page must not offer what the app refuses: local paths and web addresses."""
    (photo,) = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/predict"]["parameters"]
    assert photo["python_type"]["description"] == UPLOAD_DESCRIPTION
    assert "publicly available" not in json.dumps(photo) and "http" not in json.dumps(photo)


def readme_curl() -> str:
    """README's curl example of the REST call, exactly as written there."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "/gradio_api/upload" in b]
    return block


def test_the_readme_curl_example_answers(server):
    script = readme_curl().replace("http://127.0.0.1:7860", server.url.rstrip("/"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    event, data = done.stdout.strip().splitlines()[:2]
    assert event == "event: complete", done.stdout
    probabilities, verdict, details = json.loads(data.removeprefix("data: "))
    assert probabilities["label"] == details["label"] == "grizzly" and details["error"] is None
    assert verdict == f"**grizzly** ({details['confidence']:.0%})."


@pytest.mark.parametrize("label", VOCAB)
def test_single_call(client, label):
    probabilities, message, details = call(client, example(label))
    assert probabilities["label"] == label
    assert sorted(c["label"] for c in probabilities["confidences"]) == VOCAB
    assert sum(c["confidence"] for c in probabilities["confidences"]) == pytest.approx(1, abs=1e-4)
    assert details == {**details, "label": label, "out_of_domain": False, "error": None}
    assert label in message


def test_out_of_domain_is_reported(client):
    _, message, details = call(client, EXAMPLES_DIR / "coffee_cup.jpg")
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


def test_start_up_is_quiet_and_truthful(server):
    """No library warning that we have already answered: the SHA-256 is checked before unpickling, or the start
    serves from the cache without unpickling (one line of ours says which instead), and fastai's torch.jit
    deprecation is nothing for a user to act on. The start-up's lines only: the shared server's later output holds
    whatever the tests before this one sent it (tracebacks of refused payloads, and once, in CI, a pandas deprecation
    from Gradio's queue analytics: `gradio/queueing.py`, `infer_objects(copy=False)`)."""
    whole = server.output()
    assert "Running on local URL" in whole, whole
    output = whole[: whole.index("Running on local URL")]
    assert (
        "Loaded model.pkl: its SHA-256 matched the expected one before it was unpickled." in output
        or f"Serving model.pkl from its cached ONNX graphs: {serving.SERVED_NOTE}" in output
        or f"Serving model.pkl from the served files beside it: {serving.SERVED_NOTE}" in output
    ), output
    assert "insecure pickle" not in output
    assert "torch.jit" not in output and "Warning" not in output, output
