"""Run every benchmark once and rewrite BENCHMARKS.md with the results and the machine they ran on.

python -m bench.run            # about 15 minutes on 2 CPU cores
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

from bear_classifier import serving
from bear_classifier.model import modelfile
from bear_classifier.settings import ROOT, Settings
from bear_classifier.training import evaluate
from bench import hostile, http, latency
from tests.support import soak
from tests.support.appserver import ONE_ADDRESS, AppServer


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = modelfile.library_versions()
    return (
        f"{datetime.date.today()}, {cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB, no GPU; "
        f"torch {versions['torch']} ({torch.get_num_threads()} threads), fastai {versions['fastai']}, "
        f"Python {versions['python']}"
    )


def soak_section(requests: int = 2000, callers: int = 16) -> str:
    workdir = ROOT / "runs" / "soak"
    workdir.mkdir(parents=True, exist_ok=True)
    server = AppServer(workdir, **ONE_ADDRESS)
    try:
        result = soak.run(server, requests, callers)
    finally:
        server.stop()
    return (
        f"{result.requests} requests from {callers} concurrent callers, 10% of them hostile (bad uploads: text, "
        f"truncated JPEG, decompression bomb, DDS/QOI/AVIF/EPS decoder traps; raw protocol: server paths, data URLs, "
        f"malformed payloads), in {result.seconds:.0f} s: **{len(result.wrong)} wrong answers, "
        f"{len(result.lost)} lost requests**. Server memory (RSS, MB) after each tenth of the run: "
        f"{', '.join(str(round(m)) for m in result.rss_mb)}; growth from the first to the last three tenths "
        f"(medians) {result.rss_growth_mb:+.0f} MB."
        + "".join(f"\n- {problem}" for problem in result.lost + result.wrong)
    )


def kept_sections(generated: list[str]) -> list[str]:
    """The sections of the current BENCHMARKS.md that this run does not make (the recipe and guard
    tables come from their own, slower scripts), kept as they are, after the new ones."""
    path = ROOT / "BENCHMARKS.md"
    if not path.exists():
        return []
    titles = {section.splitlines()[0] for section in generated}
    chunks = ("\n" + path.read_text()).split("\n## ")[1:]
    return ["## " + chunk.strip() for chunk in chunks if "## " + chunk.splitlines()[0] not in titles]


def main() -> None:
    predictor = serving.load(Settings(), learner=True)[0]  # its parameters are counted
    sizes = latency.model_size(predictor)
    del predictor
    sections = [
        "# Benchmarks",
        f"One run of `python -m bench.run` on: {machine()}. Timings are wall-clock and vary by a few "
        "percent between runs; ratios come from one process, with the variants interleaved.",
        "## Model\n\n" + "\n".join(f"- {name}: {value:.1f}" for name, value in sizes.items()),
        "## Single-image latency (CPU, batch of one, decode to probabilities)\n"
        + latency.table(*latency.measure())
        + f"\n\nJPEG draft decoding (`BEAR_DRAFT_JPEG=1`) changes probabilities by up to "
        f"{latency.draft_difference():.4f} on 4000x3000 versions of the example photos; it is off by default so "
        "that answers equal `learn.predict`'s (within 1e-4).",
        "## Through HTTP (`gradio_client`, loopback)\n\n" + http.table([http.measure(True), http.measure(False)]),
        "## Model truth: baselines, validation and external photos (`python -m bear_classifier.training.evaluate`)\n\n"
        + evaluate.markdown(evaluate.main(["--model", str(ROOT / "model.pkl")])),
        "## Hostile callers, full sizes (`python -m bench.hostile`)\n\n" + hostile.table(),
        "## Load/soak test (`python -m bench.soak`)\n\n" + soak_section(),
    ]
    sections += kept_sections(sections)
    (ROOT / "BENCHMARKS.md").write_text("\n\n".join(sections) + "\n")
    print((ROOT / "BENCHMARKS.md").read_text())


if __name__ == "__main__":
    main()
