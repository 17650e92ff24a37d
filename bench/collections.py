"""Photos per second on one collection of 1,000 photos, every way a user can classify it.

The photos: shared/data/external (read in place, never copied), the fixture set and the examples,
repeated up to 1,000. Each variant runs in its own process (thread settings and memory do not leak
between them), one after the other:

- a `learn.predict` loop (the course's way; torch on every core),
- our predictor in a loop on one core (`Predictor.predict`, torch and ONNX Runtime on one thread),
- the CLI on all cores (`classify.run`, what `python -m bear_classifier.classify` calls),
- `--engine ray` on a local Ray (2 CPUs) with 1 and 2 actors,
- `/predict` through the API (`python app.py`, gradio_client; 1 caller, then 4 sharing one Client).

Photos per second count from the first photo to the last; loading the model (and starting Ray, its
actors and the app) is reported apart, as start-up.

    python -m bench.collections                       # about 15 minutes on 2 cores
    python -m bench.collections --variants cli ray_2  # some of them again (runs/collections.json keeps the rest)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle, islice
from pathlib import Path

from bear_classifier.settings import ROOT
from bench import write_table

EXTERNAL = ROOT.parent / "shared" / "data" / "external"
SOURCES = [EXTERNAL, ROOT / "tests" / "fixtures" / "bears", ROOT / "examples"]
SIZE = 1000
OUT = ROOT / "runs" / "collections.md"
RESULT = "RESULT "


def collection(size: int = SIZE) -> list[str]:
    from bear_classifier.classify import photo_paths

    photos = photo_paths([str(source) for source in SOURCES if source.is_dir()])
    return list(islice(cycle(photos), max(size, len(photos))))


def timed(files: list[str], predict: Callable[[str], object]) -> float:
    start = time.perf_counter()
    for path in files:
        predict(path)
    return time.perf_counter() - start


def learn_predict(files: list[str]) -> dict:
    from bear_classifier import modelfile, serving

    start = time.perf_counter()
    learn = modelfile.load(serving.MODEL_PATH)
    startup = time.perf_counter() - start

    def predict(path: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()), learn.no_bar():  # a progress bar per call otherwise
            learn.predict(path)

    return {"seconds": timed(files, predict), "startup_s": startup}


def predictor_one_core(files: list[str]) -> dict:
    import torch

    from bear_classifier import serving
    from bear_classifier.images import ImageError
    from bear_classifier.settings import Settings

    torch.set_num_threads(1)  # the Predictor gives ONNX Runtime as many threads as torch has
    start = time.perf_counter()
    predictor = serving.load(Settings())[0]
    startup = time.perf_counter() - start

    def predict(path: str) -> None:
        with contextlib.suppress(ImageError):
            predictor.predict(path)

    return {"seconds": timed(files, predict), "startup_s": startup}


def engine(files: list[str], engine: str = "local", workers: int | None = None) -> dict:
    from bear_classifier import classify
    from bear_classifier.settings import Settings

    startup = 0.0
    if engine == "ray":
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")  # loopback only
        startup = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = classify.run(files, Path(tmp) / "r.csv", Settings(), engine, workers, progress=False)
        total = time.perf_counter() - start
    # Locally, `summary.seconds` starts after the model is loaded; on Ray the actors load it inside it,
    # so their start-up is the time to the first rows.
    first = summary.first_rows_s if engine == "ray" else 0.0
    return {
        "seconds": summary.seconds - first,
        "startup_s": startup + (total - summary.seconds) + first,
        "photos": summary.photos,
        "first_rows_s": summary.first_rows_s,
        "refused": summary.refused,
    }


def api(files: list[str], callers: int) -> dict:
    from gradio_client import Client, handle_file

    from tests.support.appserver import ONE_ADDRESS, AppServer

    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp), **ONE_ADDRESS)
        try:
            client = Client(server.url, verbose=False)
            client.predict(handle_file(files[0]), api_name="/predict")
            startup = time.perf_counter() - server.started
            start = time.perf_counter()
            with ThreadPoolExecutor(callers) as pool:  # one Client shared, as bench/http.py explains
                list(pool.map(lambda path: client.predict(handle_file(path), api_name="/predict"), files))
            return {"seconds": time.perf_counter() - start, "startup_s": startup}
        finally:
            server.stop()


VARIANTS: dict[str, tuple[str, Callable[[list[str]], dict]]] = {
    "learn_predict": ("`learn.predict` loop (course), torch on 2 threads", learn_predict),
    "predictor_1core": ("our predictor in a loop, one core", predictor_one_core),
    "cli": ("CLI, all cores (2 decoding workers, batched forward passes)", lambda files: engine(files)),
    "ray_1": ("`--engine ray`, local Ray, 1 actor", lambda files: engine(files, "ray", 1)),
    "ray_2": ("`--engine ray`, local Ray, 2 actors", lambda files: engine(files, "ray", 2)),
    "api_1": ("`/predict` through the API, 1 caller", lambda files: api(files, 1)),
    "api_4": ("`/predict` through the API, 4 callers", lambda files: api(files, 4)),
}


def measure(name: str, size: int) -> dict:
    """One variant in a fresh process; its result as JSON on its line marked `RESULT` (Ray prints too)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.collections", "--variant", name, "--size", str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(
        next(line for line in reversed(done.stdout.splitlines()) if line.startswith(RESULT))[len(RESULT) :]
    )


def table(results: dict[str, dict], size: int) -> list[str]:
    base = size / results["learn_predict"]["seconds"] if "learn_predict" in results else None
    lines = [
        f"**{size} photos** ({', '.join(os.path.relpath(s, ROOT) for s in SOURCES)}, repeated)",
        "",
        "| how | photos/s | vs learn.predict | seconds | start-up s | load average after |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        rate = size / result["seconds"]
        ratio = f"{rate / base:.1f}x" if base else "-"
        load = f"{result['load_1min']:.1f}" if "load_1min" in result else "not recorded"
        lines.append(
            f"| {VARIANTS[name][0]} | {rate:.1f} | {ratio} | {result['seconds']:.1f} | {result['startup_s']:.1f} "
            f"| {load} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--variant", choices=list(VARIANTS), help="run one, in this process")
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args()
    if args.variant:
        result = VARIANTS[args.variant][1](collection(args.size))
        # The cores are shared: the load beside the run says how much of them it had.
        print(RESULT + json.dumps(result | {"load_1min": os.getloadavg()[0]}))
        return
    # A rerun of some variants (say, when the shared cores are quieter) replaces only their results.
    saved = OUT.with_suffix(".json")
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for name in args.variants:
        results[name] = measure(name, args.size)
        print(name, results[name], file=sys.stderr)
        saved.write_text(json.dumps(results, indent=1))
    write_table(table({name: results[name] for name in VARIANTS if name in results}, len(collection(args.size))), OUT)


if __name__ == "__main__":
    main()
