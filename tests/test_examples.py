"""`examples.write`: the proposed photos replace what examples/ held, re-encoded, each with its source named.
(`examples.propose` runs in the notebook: tests/test_make_it_yours.py.)"""

from PIL import Image

from bear_classifier.ship import deploy
from bear_classifier.training import examples
from tests.conftest import FIXTURE_BEARS, VOCAB


def test_written_examples_replace_the_old_ones(tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"old")
    (folder / "make_examples.py").write_text("# makes the old ones")
    chosen = {f"{label}.jpg": FIXTURE_BEARS / label / f"{label}_0001.jpg" for label in VOCAB}
    chosen["flagged_mugs.jpg"] = FIXTURE_BEARS / "teddy" / "teddy_0002.jpg"
    written = examples.write(chosen, "Photos in `bears/`", folder)
    assert (
        sorted(p.name for p in folder.iterdir())
        == sorted([*chosen, "ATTRIBUTION.md"])
        == sorted(p.name for p in written)
    )
    assert all(Image.open(folder / name).format == "JPEG" for name in chosen)
    attribution = (folder / "ATTRIBUTION.md").read_text()
    assert "| `black.jpg` | `black/black_0001.jpg` |" in attribution and "Photos in `bears/`" in attribution
    assert [deploy.example_class(name, VOCAB) for name in chosen] == [*VOCAB, None]  # the flagged one names no class
