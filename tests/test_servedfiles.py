"""The served files beside model.pkl (`servedfiles`): made from the model file alone, keyed by what changes their
meaning, checked before use, and what is beside the committed model.pkl is for that very file."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from bear_classifier import files
from bear_classifier.model import card, served, servedfiles
from bear_classifier.settings import ROOT


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "model.pkl"
    shutil.copy(ROOT / "model.pkl", model)
    fp32 = dataclasses.replace(card.read(ROOT / "model_card.md"), graphs={}, int8={})
    servedfiles.make(model, fp32)  # a copy without its int8 graphs: the fp32 ones
    return model


def test_made_from_the_model_file_alone_and_keyed_by_its_sha256(made):
    sha = files.sha256(made)
    record = servedfiles.load(made, sha, {})
    assert record is not None and record.key["sha256"] == sha
    assert {"format", "sha256", "opset", "onnxruntime", "graphs", "int8"} <= set(record.key)
    assert record.key["format"] == served.FORMAT and isinstance(record.key["opset"], int)
    assert "python" not in json.dumps(record.key)  # a graph does not depend on the Python minor
    assert servedfiles.load(made, "0" * 64, {}) is None  # another model.pkl: not its files


def test_a_changed_graph_or_another_onnxruntime_is_not_used(made, monkeypatch):
    sha = files.sha256(made)
    monkeypatch.setattr(servedfiles, "onnxruntime_version", lambda: "0.0.1")
    assert servedfiles.load(made, sha, {}) is None
    monkeypatch.undo()
    graph = servedfiles.prefix(made, sha).with_name(servedfiles.load(made, sha, {}).graphs[0])
    content = graph.read_bytes()
    graph.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    try:
        assert servedfiles.load(made, sha, {}) is None  # its SHA-256 no longer matches the record's
    finally:
        graph.write_bytes(content)
    assert servedfiles.load(made, sha, {}) is not None


def test_served_files_beside_the_committed_model_are_for_it():
    """For whoever replaces model.pkl: files made for an older model are never served with the new one; rerun
    `python -m bear_classifier.model.servedfiles model.pkl` (deploy does) after replacing it."""
    records = sorted((ROOT / servedfiles.FOLDER).glob("*-served.json"))
    if not records:
        pytest.skip(
            "no served files beside model.pkl yet: `python -m bear_classifier.model.servedfiles` (or deploy) makes them"
        )
    sha = files.sha256(ROOT / "model.pkl")
    assert [r.name for r in records] == [f"{sha}-served.json"], "made for another model.pkl: run the command again"
    assert servedfiles.load(ROOT / "model.pkl", sha, card.read(ROOT / "model_card.md").graphs) is not None


def test_graphs_made_under_another_torch_are_served(made, monkeypatch):
    """The Space may run another torch than the one that made the graphs (ZeroGPU's list): the record's names count."""
    from bear_classifier.model.predictor import Predictor

    sha = files.sha256(made)
    record = servedfiles.load(made, sha, {})
    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")
    served_model = Predictor(record, onnx_cache=servedfiles.prefix(made, sha))
    assert served_model.graphs == record.graphs
    assert served_model.predict(ROOT / "examples" / "grizzly_bear.jpg").label == "grizzly"
