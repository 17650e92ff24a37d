"""`python -m bear_classifier.training.evaluate` on tiny folders, and the zero-shot mapping on labels that are
not ours: it maps them or says clearly why it cannot."""

import contextlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bear_classifier import files, serving
from bear_classifier.model import card, modelfile
from bear_classifier.model.predictor import Predictor
from bear_classifier.model.transforms import input_size
from bear_classifier.training import card_writer, choice, data, evaluate, export, imagenet, train
from bear_classifier.training.evaluation import Answers, Evaluation, wilson
from tests.conftest import EXAMPLES_DIR, FIXTURE_BEARS, VOCAB, example, plain_fastai_predict, variants


@pytest.fixture(scope="module")
def tiny_external(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("external")
    for label in VOCAB:
        variants(example(label), root / "bears" / label, 2)
    variants(EXAMPLES_DIR / "cat.jpg", root / "not_bears" / "pets", 2)
    variants(EXAMPLES_DIR / "coffee_cup.jpg", root / "not_bears" / "mugs", 2)
    return root


@pytest.fixture(scope="module")
def measured(tiny_external, tmp_path_factory) -> tuple[Evaluation, Path, str]:
    """`python -m bear_classifier.training.evaluate --json` on the shipped model: what it returned, its JSON, its printout."""
    out = tmp_path_factory.mktemp("evaluation") / "evaluation.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluation = evaluate.main(
            [
                "--model",
                str(serving.MODEL_PATH),
                "--data",
                str(FIXTURE_BEARS),
                "--external",
                str(tiny_external),
                "--half",
                "all",
                "--json",
                str(out),
            ]
        )
    return evaluation, out, printed.getvalue()


def test_evaluate_on_a_tiny_set_writes_the_json(measured):
    evaluation, out, printed = measured
    assert [entry.name for entry in evaluation.ladder][0] == "pixel similarity"
    assert "zero-shot" in evaluation.ladder[1].name and evaluation.ladder[2].name == "model"
    model = evaluation.model
    assert model.valid.n == evaluation.data.n_valid > 0
    assert evaluation.data.n_train + evaluation.data.n_valid == sum(evaluation.data.counts.values()) == 24
    assert model.external_bears.n == 6 and set(model.external_bears.confusion) == {"black", "grizzly", "teddy"}
    assert model.valid.k == sum(model.valid.confusion[label][label] for label in VOCAB)
    assert set(model.ood.not_bears) == {"mugs", "pets"}
    assert model.ood.not_bears["pets"].n == 2
    assert evaluation.guard.kind == "imagenet-mass"
    assert evaluation.model_file.sha256 == files.sha256(serving.MODEL_PATH)
    assert "| model |" in printed and "pets" in printed
    # The JSON reads back as the same record.
    assert Evaluation.from_dict(json.loads(out.read_text())) == evaluation


def test_an_old_or_foreign_json_is_refused_with_a_way_out():
    with pytest.raises(ValueError, match="measure the model again"):
        Evaluation.from_dict({"vocab": VOCAB, "ladder": []})


RUN = card_writer.Run(
    arch="tf_efficientnet_lite0",
    image_size=224,
    recipe="zero_shot_fine_tune",
    epochs=3,
    learning_rate=1e-4,
    body_divisor=3,
    lwf=1.0,
    wise={0.0: (0.5, 0.9), 0.5: (0.2, 0.95), 1.0: (0.3, 0.97)},
    dropped={"too small": ["a.jpg", "b.jpg"]},
    data_source="Photos from the fixtures",
    versions={"python": "3.11.9"},
    share=0.5,
    choice=choice.choose(
        [
            choice.Candidate(
                "zero-shot, 224 px", 1, 0.0, True, right=5, n=6, flagged=0, out_of_domain={"pets": (2, 2)}
            ),
            choice.Candidate("zero-shot fine-tune, WiSE-FT share 0.5", 1, 0.5, False, right=6, n=6, flagged=0),
        ],
        "the selection half of tiny",
    ).to_dict(),
    warnings=["the guard's threshold is 0.9994 (above 0.99): it flags almost nothing"],
)


def test_the_card_takes_its_numbers_from_the_evaluation(measured, tmp_path):
    """`card_writer.facts`: the measured numbers from the evaluation of the file (each entry in its own place), how it was
    made from the run; the written card reads back as the same facts."""
    evaluation = measured[0]
    worse = Answers(n=6, k=1, confusion=evaluation.pixels.external_bears.confusion)  # tells pixels from zero-shot
    evaluation = replace(evaluation, pixels=replace(evaluation.pixels, external_bears=worse))
    facts = card_writer.facts(RUN, evaluation)
    model, zero_shot = evaluation.model, evaluation.zero_shot
    assert facts.valid_accuracy == model.valid.rate and facts.external_accuracy == model.external_bears.rate
    assert facts.baseline_accuracy == evaluation.pixels.valid.rate and facts.external_baseline_accuracy == 1 / 6
    assert facts.external_zero_shot_accuracy == zero_shot.external_bears.rate != 1 / 6
    assert facts.zero_shot_accuracy == zero_shot.valid.rate and facts.zero_shot_mapping == zero_shot.mapping
    assert (facts.n_train, facts.n_valid, facts.counts) == (
        evaluation.data.n_train,
        evaluation.data.n_valid,
        evaluation.data.counts,
    )
    assert facts.valid_flagged == model.ood.valid.rate and facts.n_not_bears == {"mugs": 2, "pets": 2}
    assert facts.ood_threshold == evaluation.guard.threshold and facts.ood_classes == evaluation.guard.in_domain
    assert facts.sha256 == files.sha256(serving.MODEL_PATH) and facts.dropped == {"too small": 2}
    assert "slice(3e-05, 1e-04)" in facts.recipe and "share of the fine-tuned 0.5," in facts.recipe
    written = card_writer.write(facts, tmp_path / "README.md")
    assert card.read(written) == facts
    text = written.read_text()
    assert (
        "| 0.5 | 0.2000 | 95.0% |" in text and "**Chosen: zero-shot fine-tune, WiSE-FT share 0.5**, because 6/6" in text
    )
    assert "| **zero-shot fine-tune, WiSE-FT share 0.5** (chosen) | 1 | 6/6 (100.0%) |" in text
    assert "- the guard's threshold is 0.9994" in text and "the selection half of tiny" in text
    assert "*shares, 99th percentile*" not in text  # the candidates above were measured with no guard named


def test_a_card_renders_again_from_its_own_facts(measured, tmp_path):
    """Its prose anew, and the data folders' notes it was written with (the folders may not be here)."""
    notes = "\n### What `bears/SOURCE.md` says\n\nPhotos from a web search.\n"
    written = card_writer.write(card_writer.facts(RUN, measured[0]), tmp_path / "README.md", sources=notes)
    before = written.read_text()
    written.write_text(before.replace("## Results", "## Old heading"))
    assert card_writer.rewrite(written).read_text() == before


def test_a_card_needs_the_baselines_and_the_file(measured):
    for partial in (replace(measured[0], pixels=None), replace(measured[0], model_file=None)):
        with pytest.raises(ValueError, match="needs the evaluation of a model.pkl file with its baselines"):
            card_writer.facts(RUN, partial)


def test_evaluate_without_external_folders_measures_validation_only(tmp_path, capsys):
    arguments = ["--model", str(serving.MODEL_PATH), "--data", str(FIXTURE_BEARS), "--no-baselines"]
    evaluation = evaluate.main(arguments)
    model = evaluation.model
    assert evaluation.external.dir is None and evaluation.pixels is None and evaluation.zero_shot is None
    assert model.external_bears is None and model.ood.external_bears is None and model.ood.not_bears == {}
    assert model.valid.rate is not None
    # A folder that was asked for but is missing is a mistake to point out, not a part to skip quietly.
    with pytest.raises(SystemExit) as stopped:
        evaluate.main([*arguments, "--external", str(tmp_path / "absent")])
    assert stopped.value.code == 2 and "absent does not exist" in capsys.readouterr().err


def test_external_folder_without_not_bears(tiny_external, tmp_path):
    shutil.copytree(tiny_external / "bears", tmp_path / "bears")
    bears, not_bears = evaluate.external_sets(tmp_path)
    assert sorted(bears) == VOCAB and not_bears == {}


def test_a_plain_label_folder_is_an_external_set_too(tiny_external, tmp_path):
    for label in VOCAB:
        shutil.copytree(tiny_external / "bears" / label, tmp_path / label)
    bears, not_bears = evaluate.external_sets(tmp_path)
    assert {label: len(paths) for label, paths in bears.items()} == {label: 2 for label in VOCAB} and not_bears == {}


def test_the_halves_of_an_external_set_split_it(tiny_external):
    everything = evaluate.external_sets(tiny_external)
    halves = [evaluate.external_sets(tiny_external, half) for half in data.HALVES]  # both halves hold photos here
    for part in (0, 1):  # in-domain, then not-in-domain photos
        names = [sorted(p for paths in sets[part].values() for p in paths) for sets in (*halves, everything)]
        assert sorted(names[0] + names[1]) == names[2] and not set(names[0]) & set(names[1])


def test_a_folder_that_yields_nothing_says_which_layout_it_wanted(tmp_path, capsys):
    (tmp_path / "photos" / "cats").mkdir(parents=True)
    (tmp_path / "photos" / "cats" / "notes.txt").write_text("not a photo")
    with pytest.raises(data.DataError, match="<label>/<photo>.*bears/<label>/<photo> plus not_bears/<source>"):
        evaluate.external_sets(tmp_path / "photos")
    model, folder = str(serving.MODEL_PATH), str(FIXTURE_BEARS)
    with pytest.raises(SystemExit) as stopped:
        evaluate.main(["--model", model, "--data", folder, "--external", str(tmp_path / "photos")])
    assert stopped.value.code == 2 and "holds no photos in its test half" in capsys.readouterr().err


def learner_for(folder: Path):
    dls = data.dataloaders(folder, data.verify_folder(folder), batch_size=2, valid_pct=0.25)
    return train.make_learner(dls, frozen_body=True), list(dls.train.items)


def test_zero_shot_mapping_on_other_labels_maps_them(tmp_path):
    variants(EXAMPLES_DIR / "cat.jpg", tmp_path / "cat", 6)
    variants(EXAMPLES_DIR / "coffee_cup.jpg", tmp_path / "cup", 6)
    learn, items = learner_for(tmp_path)
    mapping = imagenet.fit(learn, items).mapping
    assert mapping.unmapped == {}, mapping.unmapped  # the unmapped case: the next test
    names = mapping.describe()
    assert any("cat" in name for name in names["cat"]), names
    assert any("mug" in name or "cup" in name for name in names["cup"]), names


def test_zero_shot_mapping_says_when_no_class_maps(tmp_path):
    """Two labels with the same kind of photo: no ImageNet class is concentrated on either."""
    variants(EXAMPLES_DIR / "cat.jpg", tmp_path / "left", 6)
    variants(EXAMPLES_DIR / "cat.jpg", tmp_path / "right", 6, start=6)
    learn, items = learner_for(tmp_path)
    mapping = imagenet.fit(learn, items).mapping
    assert set(mapping.unmapped) == {"left", "right"}
    assert "no ImageNet class" in mapping.unmapped["left"]
    with pytest.raises(imagenet.NoZeroShotMapping):
        mapping.predict(imagenet.imagenet_probabilities(learn, items))


def test_wilson_interval():
    low, high = wilson(0, 10)
    assert low == 0 and high == pytest.approx(1.96**2 / (10 + 1.96**2))  # closed form when nothing succeeds
    low, high = wilson(330, 340)
    assert low < 330 / 340 < high and (1 - high, 1 - low) == pytest.approx(wilson(10, 340))
    assert high - low > 0.03  # 340 photos do not tell 97.1% from 97.6%


def test_zero_shot_recipe_puts_the_mapping_inside_the_model(tmp_path):
    """`train.zero_shot`: learn.predict gives the mapped ImageNet mass, normalised over our classes,
    from a model.pkl that plain fastai loads; the guard reads the same forward pass, at the model's 160 px."""
    variants(EXAMPLES_DIR / "cat.jpg", tmp_path / "data" / "cat", 6)
    variants(EXAMPLES_DIR / "coffee_cup.jpg", tmp_path / "data" / "cup", 6)
    dls = data.dataloaders(tmp_path / "data", data.verify_folder(tmp_path / "data"), size=160, batch_size=2)
    learn = train.make_learner(dls, frozen_body=True)
    mapping = imagenet.ZeroShotMapping(["cat", "cup"], {"cat": [281, 282, 283, 284, 285], "cup": [504, 968]})
    assert train.zero_shot(learn, mapping).lr is None
    imagenet.attach_ood(learn, list(dls.train.items))
    export.save(learn, tmp_path / "model.pkl")
    learn = modelfile.load(tmp_path / "model.pkl")
    predictor = Predictor(learn)
    assert predictor.guard.size == 160 == input_size(learn) and predictor._guard_network is None  # one pass
    photos = [EXAMPLES_DIR / "cat.jpg", EXAMPLES_DIR / "coffee_cup.jpg", example("teddy")]
    scores = mapping.scores(imagenet.imagenet_probabilities(learn, photos))
    same_pass = imagenet.imagenet_probabilities(learn, photos)
    for i, photo in enumerate(photos):
        expected = (scores[i] / scores[i].sum()).tolist()
        assert learn.predict(photo)[2].tolist() == pytest.approx(expected, abs=1e-5)
        answer = predictor.predict(photo)
        assert list(answer.probabilities.values()) == pytest.approx(expected, abs=1e-4)
        assert answer.ood_score == pytest.approx(1 - float(same_pass[i, predictor.guard.in_domain].sum()), abs=1e-4)
    assert plain_fastai_predict(tmp_path / "model.pkl", EXAMPLES_DIR / "cat.jpg", tmp_path)[:2] == (
        "cat",
        ["cat", "cup"],
    )


def test_the_command_without_photos_says_where_they_go(tmp_path):
    """The README's evaluate command on a fresh clone (no data/bears yet): a message, not a traceback."""
    import os
    import subprocess
    import sys

    from bear_classifier.settings import ROOT

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bear_classifier.training.evaluate",
            "--model",
            str(ROOT / "model.pkl"),
            "--json",
            "e.json",
        ],
        cwd=tmp_path,  # a fresh clone has no data/bears
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "no training photos at data/bears" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "e.json").exists()


def test_guard_ignores_classes_that_only_a_few_training_photos_carry():
    """Label noise: 3 of 60 black-bear photos that are mostly "wild boar" do not make it in domain; a class
    that a third of the teddies carry does."""
    import torch

    boar, black, teddy, toyshop = 342, 295, 850, 865
    probs = torch.full((120, 1000), 0.0)
    labels = ["black"] * 60 + ["teddy"] * 60
    probs[:60, black] = 0.9
    probs[:3, black], probs[:3, boar] = 0.1, 0.8
    probs[60:, teddy] = 0.9
    probs[60:80, teddy], probs[60:80, toyshop] = 0.5, 0.4
    probs += (1 - probs.sum(1, keepdim=True)) / 1000
    guard = imagenet.ImageNetGuard.from_shares(probs, labels, ["black", "teddy"])
    assert black in guard.in_domain and teddy in guard.in_domain and toyshop in guard.in_domain
    assert boar not in guard.in_domain
    # the odd photos do not set the threshold either: a wild boar is flagged
    wild_boar = torch.full((1, 1000), 0.0)
    wild_boar[0, boar] = 0.95
    wild_boar += (1 - wild_boar.sum()) / 1000
    assert guard.is_out(wild_boar).item()
    assert guard.is_out(probs).float().mean() <= 0.05


def test_an_external_folder_that_was_given_must_exist(tmp_path):
    assert evaluate.external_folder(None) is None and evaluate.external_folder(tmp_path) == tmp_path
    with pytest.raises(data.DataError, match="external_dir .*absent does not exist"):
        evaluate.external_folder(tmp_path / "absent")


def test_evaluate_measures_on_the_split_of_the_runs_own_seed(capsys):
    """The card's validation numbers come from the training run's split: with `--seed 7` evaluate re-makes the
    seed-7 split (not the default one), says so, and measures on that split's photos."""
    size = input_size(modelfile.load(serving.MODEL_PATH))
    valid_7 = evaluate.split(FIXTURE_BEARS, size, seed=7)[1]
    per_class = {label: sum(p.parent.name == label for p in valid_7) for label in VOCAB}
    default = evaluate.split(FIXTURE_BEARS, size)[1]
    assert per_class != {label: sum(p.parent.name == label for p in default) for label in VOCAB}  # tells them apart
    evaluation = evaluate.main(
        ["--model", str(serving.MODEL_PATH), "--data", str(FIXTURE_BEARS), "--no-baselines", "--seed", "7"]
    )
    confusion = evaluation.model.valid.confusion
    assert {label: sum(confusion[label].values()) for label in VOCAB} == per_class
    assert evaluation.data.seed == 7 and f"{len(valid_7)} photos (seed 7, 20% of" in capsys.readouterr().out


def test_evaluate_measures_on_the_split_the_run_wrote(tmp_path):
    """Issue 29: the split.json a run wrote beside its model.pkl is the split, whatever the notebook's cell 9 did (here:
    one validation photo trained on), and the card's seed is the run's; without one, the split is made again from the
    seed. The names are kept within the data folder, so a run's split holds wherever the photos are. A split written
    for another model.pkl is refused: it would measure this model on someone else's split."""
    size = input_size(modelfile.load(serving.MODEL_PATH))
    made_train, made_valid = evaluate.split(FIXTURE_BEARS, size)
    train, valid = [*made_train, made_valid[0]], made_valid[1:]
    model = tmp_path / "model.pkl"
    model.symlink_to(serving.MODEL_PATH.resolve())
    sha = files.sha256(model)
    written = data.write_split(tmp_path, FIXTURE_BEARS, train, valid, seed=7, valid_pct=0.2, model_sha256=sha)
    assert str(FIXTURE_BEARS) not in written.read_text()
    assert evaluate.split(FIXTURE_BEARS, size, written=data.read_split(tmp_path, FIXTURE_BEARS, sha)) == (train, valid)
    assert data.read_split(tmp_path / "no-run", FIXTURE_BEARS, sha) is None
    evaluation = evaluate.main(["--model", str(model), "--data", str(FIXTURE_BEARS), "--no-baselines"])
    assert sum(sum(row.values()) for row in evaluation.model.valid.confusion.values()) == len(valid)
    assert (evaluation.data.n_train, evaluation.data.seed) == (len(train), 7)
    with pytest.raises(data.DataError, match="another model.pkl"):
        data.read_split(tmp_path, FIXTURE_BEARS, "0" * 64)
