"""int8 graphs (`quantize`): ONNX Runtime's static quantization of each served pass, compared photo by photo with
the fp32 graphs, named with their SHA-256s in the model card, and served only as the card names them."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import onnx
import pytest

from bear_classifier import files
from bear_classifier.model import card, modelfile, servedfiles
from bear_classifier.model.predictor import Predictor, int8_name
from bear_classifier.training import card_writer, choice, quantize
from bear_classifier.training.candidates import Photos
from tests.conftest import FIXTURE_BEARS


@pytest.fixture(scope="module")
def int8_run(smoke_run, tmp_path_factory):
    """The smoke run's model with int8 graphs made beside it, calibrated on its training photos."""
    run = tmp_path_factory.mktemp("int8")
    for name in ("model.pkl", "model_card.md"):
        shutil.copy(smoke_run / name, run / name)
    learn = modelfile.load(run / "model.pkl")
    train = sorted(p for p in FIXTURE_BEARS.rglob("*.jpg"))[::2]
    graphs = quantize.make(learn, quantize.calibration_photos(train, 8), run)
    return run, learn, graphs


def test_each_pass_gets_an_int8_graph_with_int8_weights(int8_run):
    run, learn, graphs = int8_run
    fp32 = Predictor(learn, backend="onnx")
    assert set(graphs) == {int8_name(size, guard) for size, guard, _, _ in fp32.passes()}
    for name, digest in graphs.items():
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == digest
        graph = onnx.load(str(run / name)).graph
        ops = {node.op_type for node in graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ
        int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert len(int8_weights) > 40  # every convolution but the first and the last: lite0 has 49
        assert (run / name).stat().st_size < 0.7 * len(fp32_bytes(learn, fp32, name))


def fp32_bytes(learn, fp32: Predictor, name: str) -> bytes:
    from bear_classifier.model.predictor import onnx_graph

    size, guard = next((s, g) for s, g, _, _ in fp32.passes() if int8_name(s, g) == name)
    imagenet = (fp32.guard.imagenet_weight, fp32.guard.imagenet_bias) if guard else None
    return onnx_graph(learn.model, size, imagenet)


@pytest.fixture(scope="module")
def compared(int8_run):
    run, learn, _ = int8_run
    photos = sorted(FIXTURE_BEARS.rglob("*.jpg"))
    return quantize.compare(learn, run, Photos.of(photos[::2], photos[1::2], None)), photos


def test_the_comparison_counts_every_photo_and_the_rule_decides(int8_run, compared):
    run, learn, _ = int8_run
    comparison, photos = compared
    assert comparison.photos == 2 * len(photos[1::2])  # validation chooses: the same photos twice
    assert comparison.fp32.n == comparison.int8.n == len(photos[1::2])
    assert 0 < comparison.max_gap <= 1  # the int8 graphs ran: never the fp32 probabilities (a 64 px model on 8
    # calibration photos is far off: how far is what the comparison and the rule are for)
    assert (comparison.ships, comparison.reason) == choice.precision(comparison.fp32, comparison.int8, "validation")
    text = card_writer.int8_text(comparison.to_dict(), {})
    assert f"Of {comparison.photos} photos compared" in text and f"**Serving {comparison.ships}**" in text
    # The guard's threshold is fitted again on the int8 scores of the training photos, at the model's quantile.
    assert comparison.int8.threshold == quantize.int8_threshold(learn, run, photos[::2])
    assert comparison.int8.threshold != comparison.fp32.threshold


def test_served_files_use_the_int8_graphs_the_card_names_and_refuse_altered_ones(int8_run, compared, tmp_path):
    run, _, graphs = int8_run
    for name in ("model.pkl", "model_card.md", *graphs):
        shutil.copy(run / name, tmp_path / name)
    model = tmp_path / "model.pkl"
    sha = files.sha256(model)
    facts = dataclasses.replace(card.read(tmp_path / "model_card.md"), graphs=graphs, int8=compared[0].to_dict())
    servedfiles.make(model, facts)
    record = servedfiles.load(model, sha, graphs)
    assert record is not None and all(name.endswith("-int8.onnx") for name in record.graphs)
    assert record.guard.threshold == compared[0].int8.threshold  # the int8 graphs' own threshold serves with them
    assert servedfiles.load(model, sha, {}) is None  # made for the int8 graphs: not what an fp32 card serves
    served = Predictor(record, onnx_cache=servedfiles.prefix(model, sha))
    assert served.predict(sorted(FIXTURE_BEARS.rglob("*.jpg"))[0]).label in served.vocab

    name = next(iter(graphs))
    graph = tmp_path / name
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(modelfile.ModelFileError, match="SHA-256"):
        servedfiles.int8_graphs(model, facts)
    graph.unlink()
    with pytest.raises(modelfile.ModelFileError, match="copy the training run"):
        servedfiles.int8_graphs(model, facts)
    assert servedfiles.int8_graphs(model, dataclasses.replace(facts, graphs={})) is None
