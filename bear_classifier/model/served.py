"""What serving a model.pkl needs besides its ONNX graphs, kept beside them without fastai: a start that finds it
for this exact file and environment serves without importing fastai or timm, and without unpickling model.pkl.

The first start with a model (an empty cache) checks it in a child process, loads it with `load_learner` and
exports the ONNX graphs (`serving.load`); then `Predictor.served` writes this record, so it exists only for a
model that passed both here. Its key holds the model's SHA-256 and the versions the check ran under: a record
written under others is not trusted, and the next start takes the long way again and rewrites it.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bear_classifier import files
from bear_classifier.model import modelfile
from bear_classifier.model.guard import Guard
from bear_classifier.model.pixels import Affine, PlainTransform


@dataclass(frozen=True, eq=False)
class Served:
    key: dict[str, Any]
    """The model's SHA-256 and this environment's versions when it was written (`key`)."""
    vocab: list[str]
    plain: PlainTransform
    guard: Guard | None
    """Without its ImageNet weights: they are inside the guard's ONNX graph."""
    graphs: list[str]
    """The ONNX graphs' file names, beside the record: the answer's, then the guard's when it reads another size."""


FORMAT = 1
"""Raise it when what a record or its graphs mean changes (the transform's numbers, the guard, the graphs' outputs):
records written by older code are then not trusted, even in a cache that outlives the code (`BEAR_CACHE`)."""


def key(sha: str, recorded: Mapping[str, str], int8: Mapping[str, str]) -> dict[str, Any]:
    """What a record must have been written under to be trusted: this module's `FORMAT`, the model's SHA-256, the
    int8 graphs its model card names (`int8`, empty: fp32), the versions it records (`recorded`) and this
    environment's, which the start-up check compares
    (`modelfile.check_servable`), torch's own version string, build tag included (the graphs' names carry it), and
    ONNX Runtime's, which runs the graphs."""
    try:
        onnxruntime = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        onnxruntime = None
    return {
        "format": FORMAT,
        "sha256": sha,
        "int8": dict(int8),
        "recorded": dict(recorded),
        "versions": modelfile.library_versions(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime,
    }


def path(onnx_cache: Path) -> Path:
    """The record's file for the graphs under the path prefix `onnx_cache` (`<cache>/onnx/<the model's SHA-256>`)."""
    return onnx_cache.with_name(f"{onnx_cache.name}-served.json")


def load(onnx_cache: Path, expected_key: dict[str, Any]) -> Served | None:
    """The record kept for `onnx_cache` when it was written under `expected_key` and every graph it names is there;
    else None: the start loads the learner again."""
    try:
        record = _from_json(json.loads(path(onnx_cache).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable
    if record.key != expected_key or not all(onnx_cache.with_name(name).is_file() for name in record.graphs):
        return None
    return record


def save(onnx_cache: Path, record: Served) -> None:
    """Keep `record` for `onnx_cache`, atomically: another process never reads half a record."""
    target = path(onnx_cache)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with files.replacing(target) as partial:
            partial.write_text(json.dumps(_to_json(record)))
    except (OSError, TypeError, ValueError):
        pass  # a read-only cache, or a guard state JSON cannot hold, only costs the next start the long way


def _to_json(record: Served) -> dict[str, Any]:
    plain, guard = record.plain, record.guard
    return {
        "key": record.key,
        "vocab": record.vocab,
        "plain": {
            "crop": list(plain.crop),
            "val_xtra": plain.val_xtra,
            "resample": plain.resample,
            "div": plain.div,
            # tolist: each float32 as the double that holds it exactly, and JSON writes doubles exactly
            "mean": plain.mean.tolist(),
            "std": plain.std.tolist(),
            "affine": dataclasses.asdict(plain.affine) if plain.affine else None,
        },
        "guard": None
        if guard is None
        else {
            "in_domain": guard.in_domain,
            "threshold": guard.threshold,
            "quantile": guard.quantile,
            "size": guard.size,
        },
        "graphs": record.graphs,
    }


def _from_json(data: dict[str, Any]) -> Served:
    plain = data["plain"]
    return Served(
        key=data["key"],
        vocab=list(data["vocab"]),
        plain=PlainTransform(
            crop=tuple(plain["crop"]),
            val_xtra=plain["val_xtra"],
            resample=plain["resample"],
            div=plain["div"],
            mean=torch.tensor(plain["mean"]),
            std=torch.tensor(plain["std"]),
            affine=Affine(**plain["affine"]) if plain["affine"] else None,
        ),
        guard=Guard(**data["guard"]) if data["guard"] else None,
        graphs=list(data["graphs"]),
    )
