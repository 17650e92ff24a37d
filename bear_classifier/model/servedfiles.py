"""The served files beside model.pkl: its ONNX graphs and the plain `served` record, made from the model file alone,
so that a Space's first start (a fresh disk after every restart, rebuild and wake-up) serves without importing
fastai or unpickling anything:

    python -m bear_classifier.model.servedfiles model.pkl      # (re)makes served/ beside it; run after replacing model.pkl

When the model card names int8 graphs (`quantize`), those serve: they are checked against the card's SHA-256s and
copied in, not exported.

They are made here (and by `deploy`, for the model it uploads), where the pickle is trusted and fastai is installed,
not on the Space. Their key (`key`) holds what can change their meaning: the record's `served.FORMAT`, the model's
SHA-256, the graphs' ONNX opset and the ONNX Runtime release that runs them (not the Python minor or torch: a graph
depends on neither). A start whose model.pkl, ONNX Runtime or record format differs ignores them and takes the long
way (`serving.load`). Each graph's SHA-256 is in the record and is checked before it is read. Not committed to git
(tens of MB of regenerable binaries): `deploy` makes them and ships them in the Space's tree.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

from bear_classifier import files
from bear_classifier.model import card, modelfile, served
from bear_classifier.model.predictor import Int8Graphs

FOLDER = "served"
"""Beside model.pkl: `served/<its SHA-256>-served.json` and the graphs it names."""


def prefix(model: Path, sha: str) -> Path:
    """The path prefix (`Predictor`'s `onnx_cache`) of `model`'s served files."""
    return Path(model).parent / FOLDER / sha


def onnxruntime_version() -> str | None:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return None


def key(sha: str, opset: int | None, int8: dict[str, str]) -> dict[str, Any]:
    return {"format": served.FORMAT, "sha256": sha, "opset": opset, "onnxruntime": onnxruntime_version(), "int8": int8}


def int8_graphs(model: Path, facts: card.TrainingFacts) -> Int8Graphs | None:
    """The int8 graphs that `model`'s card (`facts`) names (`quantize`), beside it, each checked against its SHA-256,
    with the guard's threshold on them; None when the card names none (the fp32 graphs serve)."""
    for name, digest in facts.graphs.items():
        graph = Path(model).parent / name
        if not graph.is_file():
            raise modelfile.ModelFileError(
                f"The model card says {name} serves, and it is not beside {model}: copy the training run's "
                f"{name} there too (python -m bear_classifier.training.promote copies every file the card names)."
            )
        if hashlib.sha256(graph.read_bytes()).hexdigest() != digest:
            raise modelfile.ModelFileError(f"{graph} does not match the SHA-256 its model card records: refusing it.")
    return Int8Graphs(Path(model).parent, facts.int8["int8"]["threshold"]) if facts.graphs else None


def load(model: Path, sha: str, int8: dict[str, str]) -> served.Served | None:
    """The record beside `model` when it was made for this file (`sha`) and these int8 graphs (the card's `graphs`),
    this record format and this ONNX Runtime, and every graph it names is there with its SHA-256; else None."""
    onnx_cache = prefix(model, sha)
    try:
        record = json.loads(served.path(onnx_cache).read_text())
        wanted = key(sha, record["key"].get("opset"), int8)
        hashes = record["key"].get("graphs") or {}
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    if {k: v for k, v in record["key"].items() if k != "graphs"} != wanted or not hashes:
        return None
    for name, digest in hashes.items():
        graph = onnx_cache.with_name(name)
        if not graph.is_file() or hashlib.sha256(graph.read_bytes()).hexdigest() != digest:
            return None
    return served.load(onnx_cache, record["key"])


def make(model: Path, facts: card.TrainingFacts) -> Path:
    """(Re)make `model`'s served files (fastai loads the trusted file here, the graphs are exported, or the int8
    graphs its card `facts` names are copied) and remove those of any other model; returns the record's path."""
    from bear_classifier.model.predictor import Predictor  # the training side's imports: fastai comes with it

    model = Path(model)
    sha = files.sha256(model)
    if load(model, sha, facts.graphs) is not None:
        return served.path(prefix(model, sha))
    folder = model.parent / FOLDER
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    onnx_cache = prefix(model, sha)
    learn = modelfile.load(model, expected_sha256=sha)
    predictor = Predictor(learn, backend="onnx", onnx_cache=onnx_cache, int8=int8_graphs(model, facts))
    record = predictor.served({})
    if record is None:
        raise RuntimeError(f"{model} cannot be served from ONNX graphs (a learner without the standard transforms)")
    graphs = {name: hashlib.sha256(onnx_cache.with_name(name).read_bytes()).hexdigest() for name in record.graphs}
    record_key = {**key(sha, _opset(onnx_cache.with_name(record.graphs[0])), facts.graphs), "graphs": graphs}
    served.save(onnx_cache, served.Served(record_key, record.vocab, record.plain, record.guard, record.graphs))
    return served.path(onnx_cache)


def _opset(graph: Path) -> int | None:
    import onnx

    proto = onnx.load(str(graph), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.model.servedfiles", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", type=Path, nargs="?", default=Path("model.pkl"))
    parser.add_argument("--card", type=Path, help="its model card (default: model_card.md beside it)")
    args = parser.parse_args(argv)
    record = make(args.model, card.read(args.card or args.model.parent / "model_card.md"))
    print(f"Served files for {args.model} ({files.sha256(args.model)[:12]}): {record.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
