"""Data checks: bad files are dropped and counted, unusable folders give a clear error."""

import csv
import hashlib
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bear_classifier.training import baseline, data
from tests.support import hard_inputs

EXTERNAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "external"


def make_folder(root: Path, per_class: dict[str, int]) -> Path:
    for label, n in per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = {"a": (200, 40, 40), "b": (40, 40, 200), "c": (40, 200, 40)}.get(label, (i * 20, 100, 100))
            Image.new("RGB", (80 + i, 60), colour).save(root / label / f"{label}_{i}.jpg")
    return root


def test_bad_files_are_dropped_and_counted(tmp_path):
    root = make_folder(tmp_path, {"a": 4, "b": 4})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "cut.jpg").write_bytes(hard_inputs.truncated_jpeg())
    (root / "b" / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (10, 10)).save(root / "b" / "icon.png")
    shutil.copy(root / "b" / "b_0.jpg", root / "b" / "copy.jpg")

    report = data.verify_folder(root)

    assert report.counts == {"a": 4, "b": 4}
    assert len(report.dropped["not a readable image"]) == 3
    assert report.dropped["smaller than 32px"] == [str(root / "b" / "icon.png")]
    assert len(report.dropped["exact duplicate"]) == 1
    assert "dropped 3 (not a readable image)" in str(report)
    assert (root / "a" / "notes.txt").exists()  # only counted unless delete=True


def test_delete_removes_bad_downloads(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 2})
    (root / "a" / "page.php").write_text("<html>")
    data.verify_folder(root, delete=True)
    assert not (root / "a" / "page.php").exists()


def test_unreadable_path_is_counted(tmp_path):
    root = make_folder(tmp_path, {"a": 2, "b": 2})
    (root / "a" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # unreadable even for root
    report = data.verify_folder(root)
    assert report.dropped["unreadable"] == [str(root / "a" / "gone.jpg")]
    assert report.counts == {"a": 2, "b": 2}


@pytest.mark.parametrize(
    "layout, words",
    [({"a": 3}, "at least two"), ({"a": 3, "b": 0}, "empty: \\['b'\\]"), ({}, "at least two")],
)
def test_unusable_folders_raise(tmp_path, layout, words):
    root = make_folder(tmp_path, layout)
    with pytest.raises(data.DataError, match=words):
        data.verify_folder(root)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.verify_folder(tmp_path / "nowhere")


def test_dataloaders_split_is_seeded_and_sized(tmp_path):
    root = make_folder(tmp_path, {"a": 10, "b": 10})
    report = data.verify_folder(root)
    first = data.dataloaders(root, report, size=32, batch_size=4)
    again = data.dataloaders(root, report, size=32, batch_size=4)
    assert list(first.valid.items) == list(again.valid.items)
    assert len(first.valid_ds) == 4 and list(first.vocab) == ["a", "b"]
    assert len(data.dataloaders(root, report, size=32, batch_size=2, max_per_class=3).train_ds) == 5


def test_too_few_images_for_a_batch(tmp_path):
    root = make_folder(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(data.DataError, match="batch"):
        data.dataloaders(root, data.verify_folder(root), size=32, batch_size=32)


def test_baseline_learns_colours(tmp_path):
    root = make_folder(tmp_path, {"a": 6, "b": 6, "c": 6})
    files = sorted(root.rglob("*.jpg"))
    train, valid = files[::2], files[1::2]
    assert baseline.baseline_accuracy(train, valid) == 1.0
    model = baseline.PixelSimilarity().fit(train, [p.parent.name for p in train])
    assert model.predict([root / "a" / "a_1.jpg"]) == ["a"]


def test_the_external_halves_go_by_the_first_hex_digit_of_the_sha256(tmp_path):
    # Bytes whose SHA-256 starts with 0-7 go to the selection half, 8-f to the test half (found by trying).
    chosen = {}
    for i in range(64):
        blob = f"photo {i}".encode()
        chosen.setdefault(hashlib.sha256(blob).hexdigest()[0] in "01234567", blob)
    for selection, blob in chosen.items():
        (tmp_path / "photo").write_bytes(blob)
        assert data.external_half(tmp_path / "photo") == ("selection" if selection else "test")


@pytest.mark.skipif(not EXTERNAL.is_dir(), reason=f"needs the external photos in {EXTERNAL} (not in the repo)")
def test_the_halves_are_those_the_manifests_list():
    for manifest in sorted(EXTERNAL.glob("*/manifest.csv")):
        with manifest.open(newline="") as rows:
            for row in csv.DictReader(rows):
                expected = "selection" if row["sha256"][0] in "01234567" else "test"
                assert data.external_half(EXTERNAL / row["file"]) == expected, row["file"]
