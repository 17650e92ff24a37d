"""Human in the loop: flags written by the real Gradio flagging code become training data for a
further fine-tune of an exported model."""
import gradio as gr
from PIL import Image, ImageOps

from bear_classifier import export, feedback
from bear_classifier.components import UploadedImage
from tests.conftest import example


def flag_images(folder, tmp_path):
    """Flag variants of the examples through ReviewLog, as the app's buttons do."""
    log = feedback.ReviewLog()
    log.setup([UploadedImage(type="filepath"), gr.Label(), gr.Markdown(), gr.JSON()], str(folder))
    for label in ("black", "grizzly", "teddy"):
        for i, variant in enumerate((lambda im: im, ImageOps.mirror, ImageOps.flip, ImageOps.grayscale)):
            path = tmp_path / f"{label}_{i}.jpg"
            variant(Image.open(example(label))).convert("RGB").save(path)
            log.flag([uploaded(path), {"label": "teddy"}, "**teddy** bear", {"label": "teddy"}], label)
    log.flag([uploaded(example("teddy")), {"label": "teddy"}, "", {}], feedback.NOT_A_BEAR)


def uploaded(path):
    """An image as the browser's upload reaches the flag callback."""
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def test_flags_are_read_back_with_their_corrections(tmp_path):
    folder = tmp_path / "review"
    flag_images(folder, tmp_path)
    reviewed = feedback.reviewed_images(folder)
    assert [label for _, label in reviewed] == ["black"] * 4 + ["grizzly"] * 4 + ["teddy"] * 4  # "not a bear" left out
    assert all(path.is_relative_to(folder) for path, _ in reviewed)  # copies inside the review folder


def test_a_moved_review_folder_still_finds_its_images(tmp_path):
    flag_images(tmp_path / "review", tmp_path)
    (tmp_path / "review").rename(tmp_path / "downloaded")
    assert len(feedback.reviewed_images(tmp_path / "downloaded")) == 12


def test_fine_tune_on_reviews_exports_a_working_model(smoke_run, tmp_path):
    folder = tmp_path / "review"
    flag_images(folder, tmp_path)
    learn = feedback.fine_tune_on_reviews(smoke_run / "model.pkl", folder, epochs=1, batch_size=2)
    assert len(learn.dls.train_ds) + len(learn.dls.valid_ds) == 12
    sha = export.export(learn, tmp_path / "model.pkl")
    reloaded = export.load(tmp_path / "model.pkl", expected_sha256=sha)
    assert list(reloaded.dls.vocab) == ["black", "grizzly", "teddy"]
    assert reloaded.ood_state["bank"].shape[0] == len(learn.dls.train_ds)


def test_review_dir_prefers_persistent_storage(monkeypatch, tmp_path):
    monkeypatch.setenv("BEAR_REVIEW_DIR", str(tmp_path))
    assert feedback.review_dir() == tmp_path
