"""A public Space meets hostile callers (issue 9): each attack spoken in Gradio's raw protocol against
`python app.py` on loopback (tests/support/rawcaller.py), at a size CI can afford (`python -m bench.hostile`
runs the full sizes)."""

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bear_classifier import decoding
from bear_classifier.clients import wait
from bear_classifier.limits import BUSY, UPLOADS_FULL, URL_PATH
from tests.conftest import EXAMPLES_DIR, ROOT, example
from tests.support import hard_inputs, rawcaller
from tests.support.appserver import AS_ON_A_SPACE, AppServer, folder_bytes

SERVER_FILES = [
    "/etc/passwd",
    "/proc/self/environ",
    str(ROOT / "app.py"),
    str(ROOT / "model.pkl"),
    str(example("black")),
]


@pytest.fixture
def caller(server):
    raw = rawcaller.RawCaller(server.url)
    yield raw
    raw.close()


def label_of(outcome: rawcaller.Outcome) -> str | None:
    assert outcome.success, outcome.error
    return outcome.data[2]["label"]


def error_of(outcome: rawcaller.Outcome) -> str:
    assert outcome.success, outcome.error  # a refusal is an answer, not a failed request
    return outcome.data[2]["error"]


def review_bytes(server: AppServer) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(server.review_dir.rglob("*")) if p.is_file())


def test_a_normal_raw_call_is_answered(caller):
    assert label_of(caller.predict(caller.uploaded("g.jpg", example("grizzly").read_bytes()))) == "grizzly"


@pytest.mark.parametrize("path", SERVER_FILES)
def test_server_files_are_never_classified(caller, path):
    """A FileData without "meta" naming a server file: Gradio hands it on unchecked; we refuse it."""
    assert "only reads photos uploaded" in error_of(caller.predict(rawcaller.server_path(path)))


@pytest.mark.parametrize("path", SERVER_FILES)
def test_flags_never_copy_server_files(caller, server, path):
    caller.predict(caller.uploaded("t.jpg", example("teddy").read_bytes()))  # a real answer in this session first
    stored = review_bytes(server)
    assert caller.flag(rawcaller.server_path(path)).json()["data"] == ["Error!"]
    assert review_bytes(server) == stored


def test_a_flag_needs_an_answer_in_the_same_session(server):
    alice, mallory = rawcaller.RawCaller(server.url), rawcaller.RawCaller(server.url)
    photo = alice.uploaded("b.jpg", (EXAMPLES_DIR / "cat.jpg").read_bytes())
    stored = review_bytes(server)
    assert mallory.flag(photo).json()["data"] == ["Error!"]  # mallory knows the path but was never answered
    assert alice.flag(photo).json()["data"] == ["Error!"]  # uploaded, not yet classified
    assert review_bytes(server) == stored
    alice.predict(photo)
    assert alice.flag(photo, button=3).json()["data"] != ["Error!"]
    assert review_bytes(server) != stored


def test_a_flag_flood_stores_one_small_copy(server):
    caller = rawcaller.RawCaller(server.url)
    photo = caller.uploaded("big.png", hard_inputs_noise_png())
    assert len(photo["path"]) and label_of(caller.predict(photo))
    before = sum(p.stat().st_size for p in server.review_dir.rglob("*") if p.is_file())
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda button: caller.flag(photo, button % 4), range(48)))
    grown = sum(p.stat().st_size for p in server.review_dir.rglob("*") if p.is_file()) - before
    assert 0 < grown < 2 * 2**20  # one re-encoded copy and one row, not 48 copies of a 9 MB upload


def hard_inputs_noise_png() -> bytes:
    from PIL import Image

    return hard_inputs.encode(Image.effect_noise((1800, 1800), 128).convert("RGB"), "PNG")  # about 9 MB


def malformed_payloads() -> list:
    return [
        "a string instead of a FileData",
        {"path": "/etc/hostname", "meta": rawcaller.FILE_DATA},  # outside the upload folder, with meta
        rawcaller.server_path("/etc/hostname"),
        rawcaller.data_url(b"not base64 at all"),
        {"path": 12},
        None,
    ]


def test_malformed_requests_never_fail_their_neighbours(server):
    """Four attackers keep sending malformed payloads (one at a time each, as fast as they are answered) while
    16 visitors ask for a prediction each: every visitor gets their own label (with Gradio's batching, one
    malformed item failed its whole batch). Flooding the queue instead is the busy test below."""
    labels = ["black", "grizzly", "teddy", "black"] * 4
    visitors = [rawcaller.RawCaller(server.url) for _ in labels]  # one session each: a session has one result stream
    photos = [(v, v.uploaded(f"{label}.jpg", example(label).read_bytes()), label) for v, label in zip(visitors, labels)]
    done, attacking = threading.Event(), threading.Event()

    def attack(caller: rawcaller.RawCaller) -> int:
        sent = 0
        while not done.is_set():
            for payload in malformed_payloads():
                caller.session = uuid.uuid4().hex  # a new visitor each time, as a script would
                caller.predict(payload)
                sent += 1
                attacking.set()
        return sent

    with ThreadPoolExecutor(20) as pool:
        attackers = [pool.submit(attack, rawcaller.RawCaller(server.url)) for _ in range(4)]
        assert attacking.wait(60), "no malformed request was answered"  # the visitors meet an attack under way
        answers = list(pool.map(lambda item: item[0].predict(item[1]), photos))
        done.set()
        assert sum(a.result() for a in attackers) > 20
    assert [label_of(answer) for answer in answers] == labels


@pytest.mark.parametrize("name", sorted(hard_inputs.corrupt_decoder_files()))
def test_decoders_that_raise_odd_errors_or_spin(server, name):
    """DDS (NotImplementedError), QOI, damaged AVIF, and an EPS that keeps Ghostscript busy: refused at
    once, and six requests beside it are answered."""
    content = hard_inputs.corrupt_decoder_files()[name]
    callers = [rawcaller.RawCaller(server.url) for _ in range(7)]
    photos = [c.uploaded(f"{i}.jpg", example("teddy").read_bytes()) for i, c in enumerate(callers[1:])]
    with ThreadPoolExecutor(7) as pool:
        bad = pool.submit(callers[0].predict, callers[0].uploaded(name, content))
        good = [pool.submit(c.predict, p) for c, p in zip(callers[1:], photos)]
        assert "not an image we can read" in error_of(bad.result(timeout=60))
        assert [label_of(f.result(timeout=60)) for f in good] == ["teddy"] * 6


def test_data_urls_are_refused_without_decoding(caller, server):
    """Gradio decodes a data URL before any component code: 25 MP fit in 24 KB, 177 MP in 172 KB."""
    before = server.rss_mb()
    assert "not a URL or data URL" in error_of(caller.predict(rawcaller.data_url(hard_inputs.huge_png(5000))))
    assert caller.join([rawcaller.data_url(hard_inputs.huge_png(13_300))]).status_code == 413  # over the body cap
    assert server.rss_mb() - before < 100


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_request_bodies_are_refused_before_reading(server, chunked):
    before = server.rss_mb()
    assert rawcaller.oversized_body(server.url, 40, chunked) == 413
    assert server.rss_mb() - before < 100


def test_a_large_form_field_is_refused(caller):
    response = caller.http.post(caller.api + "/upload", files={"note": (None, b"x" * (11 * 2**20))})
    assert response.status_code == 413


def test_one_image_per_upload_request(caller, server):
    response = caller.upload(*[(f"several{i}.jpg", example("black").read_bytes()) for i in range(3)])
    assert response.status_code == 400 and "one image" in response.json()["detail"]
    assert not list(server.upload_dir.rglob("several*.jpg"))  # the files Gradio stored are deleted again
    assert caller.upload(("big.jpg", b"\xff\xd8" + b"\0" * (11 * 2**20))).status_code == 413


def test_web_addresses_are_never_fetched(caller):
    response = caller.join([{"path": "https://example.com/bear.jpg", "meta": rawcaller.FILE_DATA}])
    assert response.status_code == 400 and response.json()["detail"] == URL_PATH


AROUND_THE_QUEUE = "does not accept direct HTTP POST requests"  # Gradio's own queue(api_open=False)


@pytest.mark.parametrize("fn_index", [0, "0", 0.0, None])
def test_the_queue_cannot_be_bypassed(caller, fn_index):
    """fn_index as a string or a float: Gradio coerces it to 0, so it must be refused as 0 is."""
    body = {"data": [None], "session_hash": caller.session} | ({"fn_index": fn_index} if fn_index is not None else {})
    response = caller.http.post(caller.api + "/run/predict", json=body)
    assert response.status_code == 404 and AROUND_THE_QUEUE in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/run/upload",
        "/api/predict",
        "/queue/upload",
        "/call/v2/predict",
        "/run/predict/upload",
        "/vibe-edit",
        "/x/upload",
    ],
)
def test_only_exact_routes_are_served(caller, path):
    """`POST /gradio_api/run/upload` used to get the upload treatment (any path ending in /upload), skipping
    the JSON checks: predict ran around the queue, and a web address reached Gradio's downloader."""
    body = {
        "data": [{"path": "https://example.com/b.jpg", "meta": rawcaller.FILE_DATA}],
        "session_hash": caller.session,
    }
    response = caller.http.post(caller.api + path, json=body)
    assert response.status_code == 404, response.text


def test_unknown_events_and_methods_are_refused(caller):
    assert caller.http.post(caller.api + "/run/predict", json={"data": [], "fn_index": 999}).status_code == 404
    assert (
        caller.http.post(
            caller.api + "/queue/join", json={"data": [None], "fn_index": 15, "session_hash": "s"}
        ).status_code
        == 404
    )
    assert caller.http.put(caller.api + "/queue/join", json={}).status_code == 405
    assert caller.http.get(caller.api + "/vibe-code").status_code == 404


@pytest.mark.parametrize(
    "path", ["/call/predict/not-an-event-id", f"/call/Flag/{uuid.uuid4().hex}", f"/call/predict/{uuid.uuid4().hex}/x"]
)
def test_only_answer_streams_of_queued_events_can_be_read(caller, path):
    """`GET /gradio_api/call/predict/<event id>` (README's curl example) passes; nothing else under /call/."""
    assert caller.http.get(caller.api + path).status_code == 404


@pytest.mark.parametrize(
    "body", [b"[" * 30_000, b'{"data": ' + b"[" * 30_000 + b"}", b"{", b"\xff\xfe", b'{"data": "x"}', b"[]", b"null"]
)
def test_malformed_bodies_get_a_4xx(caller, body):
    """30,000 nested [ used to be a 500 (RecursionError in the middleware)."""
    for path in ("/queue/join", "/run/Flag", "/call/predict", "/cancel"):
        response = caller.http.post(caller.api + path, content=body, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.status_code)


def test_unqueued_events_of_the_page_still_run(caller):
    """The page sends its own unqueued events (example clicks, flag buttons) to /run/predict with a fn_index."""
    body = {"data": [0], "fn_index": caller.fn_index["load_example"], "session_hash": caller.session}
    assert caller.http.post(caller.api + "/run/predict", json=body).status_code == 200


def test_a_queue_flood_is_turned_away_and_the_queue_keeps_serving(server, caller):  # per-client shares: below
    """Gradio's unbounded queue stopped for good after ~2,500 unread joins; ours is bounded."""
    counts = rawcaller.flood_queue(server.url, 300)
    assert counts.get(f"503 {BUSY}", 0) > 0 and set(counts) <= {"200", f"503 {BUSY}"}, counts
    photo = caller.uploaded("b.jpg", example("black").read_bytes())
    for _ in range(60):  # the flood's queued requests drain in seconds; then the queue takes ours again
        outcome = caller.predict(photo)
        if outcome.success or not outcome.error.startswith("503"):
            break
        time.sleep(1)
    assert label_of(outcome) == "black"


def test_errors_tell_callers_nothing_about_the_server(caller):
    outcome = caller.predict("a string instead of a FileData")
    assert not outcome.success
    assert not any(word in (outcome.error or "") for word in ("/", "Traceback", "File ", "gs "))


def test_monitoring_is_off(caller):
    assert caller.http.get(caller.api + "/monitoring/summary").status_code == 404
    assert httpx.get(caller.url + "/monitoring").status_code in (403, 404)


# One visitor cannot stall, starve or fill the Space (issue 17): a server with the shipped per-client shares and
# a 1 s decode budget; the attacker calls from 127.0.0.2, the honest visitor from 127.0.0.3.
ATTACKER, HONEST = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def fair_server(tmp_path_factory):
    running = AppServer(
        tmp_path_factory.mktemp("fair"), BEAR_DECODE_CPU_SECONDS="1", BEAR_UPLOAD_MAX_MB="300", **AS_ON_A_SPACE
    )
    yield running
    running.stop()


def honest_answer(server: AppServer) -> str | None:
    visitor = rawcaller.RawCaller(server.url, source=HONEST)
    try:
        return label_of(visitor.predict(visitor.uploaded("b.jpg", example("black").read_bytes())))
    finally:
        visitor.close()


def top_level_files(server: AppServer) -> list:
    return [p for p in server.upload_dir.iterdir() if p.is_file()] if server.upload_dir.is_dir() else []


def test_a_many_scan_jpeg_is_refused_before_decoding(fair_server):
    """76 KB of repeated refinement scans decoded for 55 s on the inference thread while others waited."""
    attacker = rawcaller.RawCaller(fair_server.url, source=ATTACKER)
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(attacker.predict, attacker.uploaded("scans.jpg", hard_inputs.many_scans_jpeg(scans=1000)))
        assert honest_answer(fair_server) == "black"
        assert "scans" in error_of(bad.result(timeout=60))


def test_a_slow_decode_is_stopped_at_its_budget_and_others_are_answered(fair_server):
    """32 scans pass the pre-check but cost more than the 1 s CPU budget at 50 MP: the worker is stopped
    (and replaced) while the honest visitor's photo is decoded by another one."""
    attacker = rawcaller.RawCaller(fair_server.url, source=ATTACKER)
    slow = attacker.uploaded("slow.jpg", hard_inputs.many_scans_jpeg(scans=27))
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(attacker.predict, slow)
        assert honest_answer(fair_server) == "black"
        assert error_of(bad.result(timeout=60)) == decoding.TOO_SLOW
    assert honest_answer(fair_server) == "black"  # the replacement worker serves


def test_a_large_photo_is_decoded_outside_the_server_process(server):
    """A 50 MP photo decoded in the server took 150 MB and more of its memory for good. (On the shared server:
    the fair server's 1 s budget leaves a decode between 0 and 1 s of CPU, RLIMIT_CPU counts whole seconds.)"""
    from PIL import Image

    photo = hard_inputs.encode(Image.open(example("grizzly")).resize((8160, 6120)), "JPEG", quality=90)
    before = server.rss_mb()
    caller = rawcaller.RawCaller(server.url, source="127.0.0.4")
    assert label_of(caller.predict(caller.uploaded("big.jpg", photo))) == "grizzly"
    assert server.rss_mb() - before < 60


def test_one_client_cannot_fill_the_queue_with_rejoins(fair_server):
    """One upload joined again and again under fresh session hashes, results never read: the client's joins
    run out (429) and the photo is decoded once (answers are kept by content); the honest visitor is answered."""
    attacker = rawcaller.RawCaller(fair_server.url, source="127.0.0.5")
    photo = attacker.uploaded("same.jpg", example("teddy").read_bytes())
    statuses = []
    for _ in range(40):
        attacker.session = uuid.uuid4().hex
        statuses.append(attacker.join([photo]).status_code)
    assert statuses.count(429) >= 10 and set(statuses) <= {200, 429}
    assert attacker.join([photo]).json()["detail"] == wait("join")
    assert honest_answer(fair_server) == "black"


def test_uploads_have_a_share_per_client_and_a_total_cap(fair_server):
    attacker = rawcaller.RawCaller(fair_server.url, source="127.0.0.6")
    noise = [bytes([i]) * (9 * 2**20) for i in range(14)]
    statuses = [attacker.upload((f"n{i}.jpg", content)).status_code for i, content in enumerate(noise)]
    assert statuses.count(429) >= 3 and statuses[0] == 200, statuses  # 100 MB a minute
    assert honest_answer(fair_server) == "black"


def test_no_temp_file_outlives_its_request(fair_server):
    """Extra parts under another field name, a dropped upload and a chunked upload over the cap each left
    Gradio's temp file (about 10 MB) in the upload folder for good."""
    attacker = rawcaller.RawCaller(fair_server.url, source="127.0.0.7")
    content = example("black").read_bytes()
    extra = attacker.http.post(
        attacker.api + "/upload", files=[("files", ("a.jpg", content)), ("other", ("b.jpg", b"x" * 2**20))]
    )
    assert extra.status_code in (200, 400)
    chunks = iter([b"--b\r\nContent-Disposition: form-data; name=files; filename=c.jpg\r\n\r\n"] + [b"x" * 2**20] * 12)
    over = attacker.http.post(
        attacker.api + "/upload", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert over.status_code == 413
    rawcaller.dropped_upload(fair_server.url, source="127.0.0.7")
    wait_until(lambda: top_level_files(fair_server) == [], 30, "a temp file outlived its request")


# Filling the disk (issue 17): a server of its own with a small upload folder (30 MB, files kept 20 s: one client
# may hold a quarter of it) and a small review folder (2 MB: one client may fill a tenth of it); the per-minute
# shares are off, so the caps are tested.
@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    running = AppServer(
        tmp_path_factory.mktemp("small"),
        BEAR_UPLOAD_MAX_MB="30",
        BEAR_UPLOAD_TTL="20",
        BEAR_REVIEW_MAX_MB="2",
        BEAR_JOINS_PER_MINUTE="1000",
        BEAR_PREDICTIONS_PER_MINUTE="1000",
        BEAR_UPLOAD_MB_PER_MINUTE="1000",
        BEAR_FLAGS_PER_HOUR="1000",
    )
    yield running
    running.stop()


def test_one_client_holds_at_most_a_quarter_of_the_upload_folder(small_server):
    """100 MB a minute for the 10 minutes an upload lives let one client fill the whole folder alone."""
    wait_for_room(small_server)
    attacker = rawcaller.RawCaller(small_server.url, source="127.0.0.9")
    statuses = [attacker.upload((f"a{i}.jpg", bytes([i]) * (3 * 2**20))).status_code for i in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429], statuses  # 7 MB of the 30 MB folder
    assert honest_upload(small_server) == 200


def wait_for_room(server: AppServer, megabytes: int = 10) -> None:
    """Until the folder holds under `megabytes` (files live 20 s; the sweep runs every 5 s)."""
    full = "the upload folder was still full a minute later"
    wait_until(lambda: folder_bytes(server.upload_dir) < megabytes * 2**20, 60, full)


def wait_until(condition: Callable[[], bool], seconds: float, failure: str) -> None:
    """Poll `condition` until it holds; fail with `failure` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure)
        time.sleep(0.2)


def honest_upload(server: AppServer) -> int:
    return rawcaller.RawCaller(server.url, source=HONEST).upload(("b.jpg", example("black").read_bytes())).status_code


def test_the_upload_folder_has_a_total_cap(small_server):
    """Uploads beyond BEAR_UPLOAD_MAX_MB, from as many clients as it takes, are refused with 503 (they used to
    fill the disk until the sweep an hour later); once the sweep has deleted the old ones, uploads are taken
    again."""
    statuses = []
    for i in range(12):  # a crowd: one 4 MB upload from each of 12 addresses
        crowd = rawcaller.RawCaller(small_server.url, source=f"127.0.1.{i + 1}")
        statuses.append(crowd.upload((f"u{i}.jpg", bytes([i]) * (4 * 2**20))).status_code)
    assert statuses[0] == 200 and statuses.count(503) >= 3 and set(statuses) <= {200, 503}, statuses
    assert sum(p.stat().st_size for p in small_server.upload_dir.rglob("*") if p.is_file()) <= 30 * 2**20
    full = rawcaller.RawCaller(small_server.url, source=HONEST).upload(("phone.jpg", bytes(4 * 2**20)))  # a 4 MB photo
    assert full.status_code == 503 and full.json()["detail"] == UPLOADS_FULL
    wait_for_room(small_server)  # the sweep deletes them after their lifetime: uploads are taken again
    assert honest_upload(small_server) == 200


def flag_new_photo(caller: rawcaller.RawCaller, content: bytes) -> bool:
    """A new session uploads a new photo (same picture, new bytes), has it classified and flags it: stored?"""
    caller.session = uuid.uuid4().hex
    photo = caller.uploaded("g.jpg", content + uuid.uuid4().bytes)  # after the JPEG's end: a new file, same picture
    assert label_of(caller.predict(photo)) == "grizzly"
    return caller.flag(photo, button=1).json()["data"] != ["Error!"]


def test_one_client_cannot_fill_the_review_folder_with_new_sessions(small_server):
    """A new session per flag used to get past every per-session limit: one client filled the review folder and
    nobody else could flag. Now one client address stores at most a tenth of it; another can still flag."""
    content = example("grizzly").read_bytes()  # about 75 KB once re-encoded: two fit in a client's 205 KB
    attacker = rawcaller.RawCaller(small_server.url, source=ATTACKER)
    images = small_server.review_dir / "images"
    stored = [flag_new_photo(attacker, content) for _ in range(8)]
    assert stored[0] and stored.count(False) >= 5, stored
    assert sum(p.stat().st_size for p in images.iterdir()) <= 0.1 * 2 * 2**20
    assert flag_new_photo(rawcaller.RawCaller(small_server.url, source=HONEST), content)
