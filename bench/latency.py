"""Single-image CPU latency: our predict vs the course's `learn.predict` vs the bare network.

All variants are timed in the same process, interleaved image by image, so their ratios are fair. The load
around the run (`bench.measured_load`) heads the table; a busy machine's run says so there.

    python -m bench.latency      # about 5 minutes on 2 idle cores; writes runs/latency.md
"""

from __future__ import annotations

import contextlib
import functools
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from bear_classifier import serving
from bear_classifier.model.predictor import Predictor
from bear_classifier.settings import ROOT, Settings
from bear_classifier.training import data
from bench import Load, load_header, measured_load, p95, write_table

EXAMPLES = [Path(p) for p in serving.EXAMPLES]  # the app's example photos
OUT = ROOT / "runs" / "latency.md"


@dataclass
class Timing:
    name: str
    ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:
        return p95(self.ms)


def phone_photo(folder: Path, source: Path = EXAMPLES[-1]) -> Path:
    """A 4000x3000 JPEG (a 12 MP phone photo) made by enlarging an example photo."""
    path = folder / f"phone_{source.stem}.jpg"
    Image.open(source).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(path, quality=92)
    return path


def time_variants(variants: dict[str, Callable[[Path], object]], images: list[Path], rounds: int) -> list[Timing]:
    for run in variants.values():  # warm-up: first calls allocate and pick kernels
        for image in images[:2]:
            run(image)
    timings = {name: Timing(name, []) for name in variants}
    for _ in range(rounds):
        for image in images:
            for name, run in variants.items():
                start = time.perf_counter()
                run(image)
                timings[name].ms.append((time.perf_counter() - start) * 1000)
    return list(timings.values())


def variants_for(predictor: Predictor) -> dict[str, Callable[[Path], object]]:
    """Our predict (decode to probabilities) on both backends, the course's learn.predict, and the
    network alone on each backend (the floor)."""
    on_torch = Predictor(predictor.learn, backend="torch")

    @functools.cache
    def preprocessed(image: Path) -> torch.Tensor:
        return predictor.transforms([predictor._decode(image)])

    def floor(network) -> Callable[[Path], object]:
        def run(image: Path) -> object:
            with torch.inference_mode():
                return network(preprocessed(image))

        return run

    return {
        "our predict (ONNX Runtime, the default)": predictor.predict,
        "our predict, PyTorch backend": on_torch.predict,
        "learn.predict (course)": predictor.learn.predict,
        "network forward only, ONNX Runtime (floor)": floor(predictor.network),
        "network forward only, PyTorch": floor(on_torch.network),
    }


def guard_steps(predictor: Predictor) -> dict[str, Callable[[Path], object]]:
    """The guard's own cost in a two-pass predictor (model and guard at different sizes): its transform
    and its network pass, each on the previous step's cached output. Without them our predict is one
    pass, as `learn.predict` is. Empty for a one-pass predictor."""
    if predictor._guard_network is None:
        return {}
    picture = functools.cache(predictor._decode)

    def transform(image: Path) -> torch.Tensor:
        return predictor._guard_transform([picture(image)])

    guard_input = functools.cache(transform)

    def guard_pass(image: Path) -> object:
        with torch.inference_mode():
            return predictor._guard_network(guard_input(image))

    return {"guard's step: transform at its size": transform, "guard's step: network pass at its size": guard_pass}


def course_learner(arch: str, folder: Path):
    """A resnet learner built the course's way (random weights: only its speed matters here)."""
    from fastai.vision.all import models, vision_learner

    for k, label in enumerate(("black", "grizzly", "teddy")):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i, example in enumerate(EXAMPLES):  # a different JPEG quality each, so no file is a duplicate
            Image.open(example).convert("RGB").save(folder / label / f"{i}.jpg", quality=60 + 10 * k + i)
    dls = data.dataloaders(folder, data.verify_folder(folder), batch_size=4)
    return vision_learner(dls, getattr(models, arch), pretrained=False)


def model_size(predictor: Predictor) -> dict[str, float]:
    return {
        "model.pkl (MB)": serving.MODEL_PATH.stat().st_size / 2**20,
        "parameters (M)": sum(p.numel() for p in predictor.model.parameters()) / 1e6,
    }


def cheap_wins(predictor: Predictor, rounds: int) -> list[Timing]:
    """PyTorch knobs that often pay on CPUs: channels_last memory layout, and 1 thread instead of
    one per core. (ONNX Runtime, the default backend, beat them all: see the next table.)"""
    on_torch = Predictor(predictor.learn, backend="torch")
    channels_last = Predictor(predictor.learn, backend="torch")
    channels_last.network.to(memory_format=torch.channels_last)
    timings = time_variants(
        {
            "our predict, PyTorch backend": on_torch.predict,
            "our predict, PyTorch backend, channels_last": channels_last.predict,
        },
        EXAMPLES,
        rounds,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = time_variants({"our predict, PyTorch backend, 1 thread": on_torch.predict}, EXAMPLES, rounds)
    finally:
        torch.set_num_threads(threads)
    return timings + one_thread


def measure(rounds: int = 10) -> tuple[dict[str, list[Timing]], Load]:
    """Every table's timings, and the load around the whole run."""
    with measured_load() as load, contextlib.redirect_stdout(io.StringIO()):  # learn.predict: a progress bar per call
        results = _measure(rounds)
    return results, load


def _measure(rounds: int) -> dict[str, list[Timing]]:
    predictor = serving.load(Settings(), learner=True)[0]
    drafted = Predictor(predictor.learn, draft=True)
    results = {"shipped model, example photos: CPU settings": cheap_wins(predictor, rounds)}
    with tempfile.TemporaryDirectory() as tmp:
        phone = phone_photo(Path(tmp))
        results["shipped model, example photos"] = time_variants(
            {**variants_for(predictor), **guard_steps(predictor)}, EXAMPLES, rounds
        )
        phone_variants = {**variants_for(predictor), "our predict, JPEG draft decoding": drafted.predict}
        results["shipped model, 4000x3000 phone JPEG"] = time_variants(phone_variants, [phone], rounds * 2)
        for arch in ("resnet18", "resnet34"):
            learner = course_learner(arch, Path(tmp) / arch)
            results[f"{arch} (course-style learner), example photos"] = time_variants(
                variants_for(Predictor(learner)), EXAMPLES, rounds
            )
    return results


def draft_difference() -> float:
    """Largest probability difference that JPEG draft decoding causes, over 4000x3000 versions of
    every example photo."""
    predictor = serving.load(Settings(), learner=True)[0]
    drafted = Predictor(predictor.learn, draft=True)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for example in EXAMPLES:
            phone = phone_photo(Path(tmp), example)
            full, fast = predictor.predict(phone).probabilities, drafted.predict(phone).probabilities
            worst = max(worst, *(abs(full[k] - fast[k]) for k in full))
    return worst


def table(results: dict[str, list[Timing]], load: Load) -> str:
    lines = load_header([load])
    for title, timings in results.items():
        ours = timings[0].p50
        lines += [
            f"\n**{title}** ({len(timings[0].ms)} calls each)\n",
            "| variant | p50 ms | p95 ms | p50 vs our predict |",
            "|---|---|---|---|",
        ]
        lines += [f"| {t.name} | {t.p50:.1f} | {t.p95:.1f} | {t.p50 / ours:.2f}x |" for t in timings]
    return "\n".join(lines)


if __name__ == "__main__":
    drafts = f"\nJPEG draft decoding changes probabilities by at most {draft_difference():.4f}"
    write_table([table(*measure()), drafts], OUT)
