"""Human in the loop: flags stored by the app's ReviewLog become training data for a further fine-tune of an
exported model; a flag is stored only for an answer the server gave in the caller's own session."""

import threading
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image, ImageOps

from bear_classifier import files, page
from bear_classifier.model import modelfile
from bear_classifier.settings import Rates
from bear_classifier.training import export, train
from bear_classifier.web import clients, components, feedback
from tests.conftest import VOCAB, example
from tests.support import hfmount

PROBABILITIES = {"black": 0.05, "grizzly": 0.05, "teddy": 0.9}
DETAILS = {"label": "teddy", "confidence": 0.9, "out_of_domain": False, "ood_score": 0.1, "error": None}
ANSWER = (PROBABILITIES, DETAILS)
"""What the app passes `ReviewLog.remember` for an answer: plain values, no serving type."""


def visitor(session: str) -> SimpleNamespace:
    """What the app's function reads of Gradio's `gr.Request`: the visitor's session."""
    return SimpleNamespace(session_hash=session)


def review_log(folder, **limits):
    log = feedback.ReviewLog(**limits)
    log.setup([], str(folder))
    return log


def answered_and_flagged(log, path, correction, session, client="127.0.0.2"):
    """What the app does on Submit (remember the answer), then what the "Wrong: ..." button does."""
    log.remember(visitor(session), str(path), *ANSWER)
    return log.flag_answer(session, str(path), correction, client)


def flag_images(folder, tmp_path):
    """Flag variants of the examples, each answered in its own visitor session."""
    log = review_log(folder)
    for label in VOCAB:
        for i, variant in enumerate((lambda im: im, ImageOps.mirror, ImageOps.flip, ImageOps.grayscale)):
            path = tmp_path / f"{label}_{i}.jpg"
            variant(Image.open(example(label))).convert("RGB").save(path)
            answered_and_flagged(log, path, label, session=f"{label}{i}", client=f"{label}{i}")
    answered_and_flagged(log, example("black"), page.NONE_OF_THESE, session="other")
    return log


def test_flags_are_read_back_with_their_corrections(tmp_path):
    folder = tmp_path / "review"
    flag_images(folder, tmp_path)
    reviewed = feedback.reviewed_images(folder)
    assert [label for _, label in reviewed] == ["black"] * 4 + ["grizzly"] * 4 + ["teddy"] * 4  # no-class flags out
    assert all(path.is_relative_to(folder) for path, _ in reviewed)  # copies inside the review folder
    rows = feedback.flags(folder)
    assert rows[0]["label"] == "teddy" and rows[0]["correction"] == "black"  # the server's answer, the user's fix


class WatchedLock:
    """A lock that says when it is asked for."""

    def __init__(self):
        self.held, self.asked = threading.Lock(), threading.Event()

    def __enter__(self):
        self.asked.set()
        self.held.acquire()

    def __exit__(self, *exc):
        self.held.release()


def test_a_slow_flag_write_holds_up_no_prediction(tmp_path):
    """Every prediction records its answer under the log's lock (`remember`); a flag's write, slow on a mounted
    bucket or while the Hub sync holds its lock, was made under that same lock, so every visitor's answer waited."""
    log = review_log(tmp_path / "review")
    sync = WatchedLock()
    log.scheduler = SimpleNamespace(lock=sync)  # CommitScheduler's lock, which a sync to the Hub holds
    log.remember(visitor("flagger"), str(example("black")), *ANSWER)
    with sync.held:  # a sync in progress: the flag's write waits for it
        flagging = threading.Thread(target=log.flag_answer, args=("flagger", str(example("black")), "black", "a"))
        flagging.start()
        assert sync.asked.wait(30)  # the flag is now waiting to write
        answering = threading.Thread(target=log.remember, args=(visitor("other"), str(example("teddy")), *ANSWER))
        answering.start()
        answering.join(5)
        assert flagging.is_alive() and not answering.is_alive()
    flagging.join(5)
    assert [row["correction"] for row in feedback.flags(tmp_path / "review")] == ["black"]


def test_flags_are_stored_on_a_bucket_mount_that_refuses_appends(tmp_path):
    """hf-mount (a Storage Bucket at /data) refuses to reopen an existing file for writing: one new file per flag."""
    folder = tmp_path / "data" / "review"
    with hfmount.mounted(tmp_path / "data") as refused:
        log = review_log(folder)
        (folder / "probe").write_bytes(b"new files are fine")
        with pytest.raises(PermissionError):  # the stand-in refuses what hf-mount refuses
            open(folder / "probe", "a")
        (folder / "probe").unlink()
        refused.clear()
        for label in VOCAB:
            answered_and_flagged(log, example(label), label, session=label, client=label)
        again = review_log(folder)  # a restart reads them back, on the mount
    assert refused == []
    assert [label for _, label in feedback.reviewed_images(folder)] == list(VOCAB)
    assert len(again._stored) == len(VOCAB)
    assert not list(folder.rglob(f"*{files.PARTIAL}"))  # nothing left half-written


def test_a_moved_review_folder_still_finds_its_images(tmp_path):
    flag_images(tmp_path / "review", tmp_path)
    (tmp_path / "review").rename(tmp_path / "downloaded")
    assert len(feedback.reviewed_images(tmp_path / "downloaded")) == 12


def test_only_an_answered_photo_of_the_same_session_can_be_flagged(tmp_path):
    log = review_log(tmp_path / "review")
    log.remember(visitor("alice"), str(example("black")), *ANSWER)
    with pytest.raises(feedback.FlagRefused, match="Submit first"):
        log.flag_answer("mallory", str(example("black")), "black")  # another session
    with pytest.raises(feedback.FlagRefused, match="Submit first"):
        log.flag_answer("alice", "/etc/passwd", "black")  # a path the server did not answer for
    assert feedback.reviewed_images(tmp_path / "review") == []


def test_flags_are_deduplicated_limited_per_client_and_capped_in_bytes(tmp_path):
    log = review_log(tmp_path / "review", quotas=clients.Quotas(Rates(flags_per_hour=2)))
    assert answered_and_flagged(log, example("black"), "grizzly", "s") == 1
    assert answered_and_flagged(log, example("black"), "grizzly", "s") == 1  # the same photo again: not stored twice
    assert answered_and_flagged(log, example("teddy"), "black", "t") == 2  # another session of the same client
    with pytest.raises(feedback.FlagRefused, match="At most 2"):
        answered_and_flagged(log, example("grizzly"), "black", "u")  # a fresh session does not reset the count
    assert answered_and_flagged(log, example("grizzly"), "black", "u", client="127.0.0.3") == 3
    noise = []
    for i in range(8):
        noise.append(tmp_path / f"noise{i}.png")
        Image.effect_noise((1024, 1024), 120).convert("RGB").save(noise[-1])
    log, stored = review_log(tmp_path / "capped", max_bytes=20_000_000), 0
    with pytest.raises(feedback.FlagRefused, match="enough for now"):  # one client fills at most its share
        for i, path in enumerate(noise):
            stored = answered_and_flagged(log, path, "black", f"v{i}", client="127.0.0.4")
    assert stored < len(noise)
    assert answered_and_flagged(log, noise[-1], "black", "w", client="127.0.0.5") == stored + 1  # the rest stays open


def test_stored_photos_lose_their_exif_and_size(tmp_path):
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (59.0, 20.0, 0.0)}  # GPS block: where the photo was taken
    Image.open(example("grizzly")).resize((3000, 2000)).save(photo, exif=exif)
    log = review_log(tmp_path / "review")
    answered_and_flagged(log, photo, "grizzly", "s")
    stored = Image.open(feedback.reviewed_images(tmp_path / "review")[0][0])
    assert max(stored.size) == feedback.REVIEW_SIDE and not stored.getexif()


def test_fine_tune_on_reviews_exports_a_working_model(smoke_run, tmp_path):
    folder = tmp_path / "review"
    flag_images(folder, tmp_path)
    learn = train.fine_tune_on_reviews(smoke_run / "model.pkl", folder, epochs=1, batch_size=2)
    assert len(learn.dls.train_ds) + len(learn.dls.valid_ds) == 12
    sha = export.save(learn, tmp_path / "model.pkl")
    reloaded = modelfile.load(tmp_path / "model.pkl", expected_sha256=sha)
    assert list(reloaded.dls.vocab) == VOCAB
    assert reloaded.ood_state["kind"] == "imagenet-mass"  # the guard travels inside the new model.pkl too
    # the pixels are normalised as the pretrained body expects (the new dataloaders got vision_learner's Normalize)
    assert [type(t).__name__ for t in reloaded.dls.valid.after_batch.fs][-1] == "Normalize"


def test_a_slow_flag_never_holds_up_remember(tmp_path):
    """A flag used to decode and re-encode the photo under the log's lock, which every prediction's
    remember() takes: everyone waited 13-16 s behind a slow photo."""
    import threading

    started, release = threading.Event(), threading.Event()

    def slow_review_copy(path, side, client):
        started.set()
        release.wait(30)
        return b"jpeg"

    log = review_log(tmp_path / "review", review_copy=slow_review_copy)
    log.remember(visitor("slow"), str(example("black")), *ANSWER)
    flagging = threading.Thread(target=log.flag_answer, args=("slow", str(example("black")), "grizzly", "a"))
    flagging.start()
    assert started.wait(10)
    remembered = threading.Thread(target=log.remember, args=(visitor("other"), str(example("teddy")), *ANSWER))
    remembered.start()
    remembered.join(5)
    waited = remembered.is_alive()
    release.set()
    flagging.join()
    assert not waited


def test_the_page_says_why_a_flag_was_refused(tmp_path):
    """What the "Wrong: ..." button writes under itself: Gradio's own showed "Saving..." and then its label again."""
    log = review_log(tmp_path / "review")
    demo = components.Interface(
        fn=lambda photo: photo,
        inputs="text",
        outputs="text",
        flagging_mode="manual",
        flagging_options=page.flag_options(VOCAB),
        flagging_callback=log,
        flagging_dir=str(tmp_path / "review"),
    )
    assert isinstance(demo.flag_note, gr.Markdown)  # rendered under the buttons
    flag = components.FlagNote(log, "black")  # what "Wrong: it is a black" runs
    note = flag(SimpleNamespace(username=None), {"path": str(example("black"))}, "teddy")
    assert note == page.flag_refused(page.FLAG_NOT_ANSWERED) and "Not stored" in note  # nothing answered here
    assert feedback.reviewed_images(tmp_path / "review") == []
