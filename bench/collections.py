"""Photos per second on one collection of 1,000+ photos, every way a user can classify it, and the batch
command's share of the floor.

The photos: every photo under shared/data (the training photos and the external set, read in place, never copied),
the fixture set and the examples, each file once (`--size N`: the first N). The table says how many distinct
contents they hold (the batch command answers a repeat from memory). Each variant runs in its own process (thread
settings and memory do not leak between them), one after the other, in one invocation:

- `floor`: forward passes only, inputs in memory (`bench.floor`, which it also writes to runs/floor.md),
- a `learn.predict` loop (the course's way; torch on every core),
- our predictor in a loop on one core (`Predictor.predict`, torch and ONNX Runtime on one thread),
- `python -m bear_classifier.batch.classify` on all cores, the real command in a process of its own, timed from its
  start to its exit (start-up, model loading and writing the rows included),
- `--engine ray` on a local Ray (2 CPUs) with 1 and 2 actors,
- `/predict` through the API (`python app.py`, gradio_client; 1 caller, then 4 sharing one Client).

"photos/s" counts from the first photo to the last; "end to end" divides by the whole run, start-up included
(loading the model, starting Ray, its actors or the app). Each row gives the load around its own run
(`bench.measured_load`); a busy row makes the table say so at its top.

    python -m bench.collections                                   # every variant: about 15 minutes on 2 idle cores
    python -m bench.collections --variants floor learn_predict cli  # the batch command's ratios: about 4 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bear_classifier.settings import ROOT
from bench import Load, load_header, measured_load, wait_until_quiet, write_table

SOURCES = [ROOT.parent / "shared" / "data", ROOT / "tests" / "fixtures" / "bears", ROOT / "examples"]
OUT = ROOT / "runs" / "collections.md"
RESULT = "RESULT "
TARGET_RATIO, TARGET_SHARE = 4.0, 0.7
"""Issue 30: the batch command, end to end, at least 4x a `learn.predict` loop and 70% of the floor."""


def collection(size: int | None = None) -> list[str]:
    """The photos under `SOURCES`, as the batch command finds them in folders; the first `size` of them."""
    from bear_classifier.batch.classify import photo_paths

    return photo_paths([str(source) for source in SOURCES if source.is_dir()])[:size]


def fingerprint(files: list[str]) -> str:
    """Names the collection, so that a rerun's rows are compared only with rows of the same photos."""
    return hashlib.sha256("\n".join(files).encode()).hexdigest()[:12]


def distinct(files: list[str]) -> int:
    from bear_classifier.files import sha256

    return len({sha256(path) for path in files})


def timed(files: list[str], predict: Callable[[str], object]) -> float:
    start = time.perf_counter()
    for path in files:
        predict(path)
    return time.perf_counter() - start


def learn_predict(files: list[str]) -> dict:
    from bear_classifier import serving
    from bear_classifier.model import modelfile

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
    from bear_classifier.model.images import ImageError
    from bear_classifier.settings import Settings

    torch.set_num_threads(1)  # the Predictor gives ONNX Runtime as many threads as torch has
    start = time.perf_counter()
    predictor = serving.load(Settings())[0]
    startup = time.perf_counter() - start

    def predict(path: str) -> None:
        with contextlib.suppress(ImageError):
            predictor.predict(path)

    return {"seconds": timed(files, predict), "startup_s": startup}


def command(files: list[str]) -> dict:
    """`python -m bear_classifier.batch.classify` as a user runs it, in a process of its own, from its start to its exit."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bear_classifier.batch.classify",
                *files,
                "--out",
                str(Path(tmp) / "r.csv"),
                "--no-progress",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        total = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the command failed:\n{done.stderr[-3000:]}")
    photos, seconds = re.search(r"^(\d+) photos in ([\d.]+) s", done.stdout, re.MULTILINE).groups()
    waited = re.search(r"model waited ([\d.]+) s", done.stdout)
    return {
        "seconds": float(seconds),
        "startup_s": total - float(seconds),
        "photos": int(photos),
        "model_waited_s": float(waited.group(1)) if waited else 0.0,
        "summary": done.stdout.strip(),
    }


def ray(files: list[str], workers: int) -> dict:
    import ray

    from bear_classifier.batch import classify
    from bear_classifier.settings import Settings

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")  # loopback only
    startup = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = classify.run(files, Path(tmp) / "r.csv", Settings(), "ray", workers, progress=False)
        total = time.perf_counter() - start
    # The actors load the model inside the run: their start-up is the time to the first rows.
    return {
        "seconds": summary.seconds - summary.first_rows_s,
        "startup_s": startup + (total - summary.seconds) + summary.first_rows_s,
        "photos": summary.photos,
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


def floor(files: list[str]) -> dict:
    """The floor, measured as `python -m bench.floor` does (and written to runs/floor.md as it would)."""
    from bench import floor as floor_bench

    measured = floor_bench.measure()[0]
    write_table(measured.table(), floor_bench.OUT, [measured.load])
    return {"photos_per_s": measured.rate(measured.best), "best_batch": measured.best}


VARIANTS: dict[str, tuple[str, Callable[[list[str]], dict]]] = {
    "floor": ("floor: the served graphs' forward passes only, at their best batch size (`bench.floor`)", floor),
    "learn_predict": ("`learn.predict` loop (course), torch on 2 threads", learn_predict),
    "predictor_1core": ("our predictor in a loop, one core", predictor_one_core),
    "cli": ("`python -m bear_classifier.batch.classify`, all cores, its own process", command),
    "ray_1": ("`--engine ray`, local Ray, 1 actor", lambda files: ray(files, 1)),
    "ray_2": ("`--engine ray`, local Ray, 2 actors", lambda files: ray(files, 2)),
    "api_1": ("`/predict` through the API, 1 caller", lambda files: api(files, 1)),
    "api_4": ("`/predict` through the API, 4 callers", lambda files: api(files, 4)),
}


def run_variant(name: str, files: list[str]) -> dict:
    """One variant in this process, with the load around it."""
    with measured_load() as load:
        result = VARIANTS[name][1](files)
    return {"photos": len(files), **result, **load.as_dict(), "collection": fingerprint(files)}


def measure(name: str, size: int | None) -> dict:
    """One variant in a fresh process; its result as JSON on its line marked `RESULT` (Ray prints too)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.collections", "--variant", name, *(["--size", str(size)] if size else [])],
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


def rates(result: dict) -> tuple[float, float]:
    """(photos/s from the first photo to the last, photos/s end to end with start-up)."""
    if "photos_per_s" in result:
        return result["photos_per_s"], result["photos_per_s"]
    return result["photos"] / result["seconds"], result["photos"] / (result["seconds"] + result["startup_s"])


def table(results: dict[str, dict], files: list[str]) -> list[str]:
    """The rows measured on these photos (a row saved from another collection is left out), then the batch command
    against the `learn.predict` loop and the floor."""
    ours = {name: r for name, r in results.items() if r.get("collection") == fingerprint(files)}
    loads = [Load.from_dict(r) for r in ours.values()]
    lines = load_header(loads) + [
        f"**{len(files)} photos, {distinct(files)} distinct contents** "
        f"({', '.join(os.path.relpath(s, ROOT) for s in SOURCES if s.is_dir())}; each file once)",
        "",
        "| how | photos/s | end to end, start-up included | vs learn.predict, end to end | seconds | start-up s "
        "| load before | load after | other processes (cores) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = rates(ours["learn_predict"])[1] if "learn_predict" in ours else None
    for name, result in ours.items():
        steady, whole = rates(result)
        load = Load.from_dict(result)
        seconds = f"{result['seconds']:.1f}" if "seconds" in result else "-"
        startup = f"{result['startup_s']:.1f}" if "startup_s" in result else "-"
        lines.append(
            f"| {VARIANTS[name][0]} | {steady:.1f} | {whole:.1f} | {f'{whole / base:.2f}x' if base else '-'} "
            f"| {seconds} | {startup} | {load.before[0]:.2f} | {load.after[0]:.2f} "
            f"| {load.others_cores if load.others_cores is not None else float('nan'):.2f} |"
        )
    lines += verdict(ours)
    return lines


def verdict(results: dict[str, dict]) -> list[str]:
    """The batch command against issue 30's targets, from this table's rows."""
    if "cli" not in results:
        return []
    steady, whole = rates(results["cli"])
    lines = [""]
    if "learn_predict" in results:
        ratio = whole / rates(results["learn_predict"])[1]
        lines.append(
            f"- The batch command, end to end with start-up: **{ratio:.2f}x the `learn.predict` loop** "
            f"(target {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'not met'})."
        )
    if "floor" in results:
        floor = results["floor"]["photos_per_s"]
        lines.append(
            f"- Its share of the floor ({floor:.1f} photos/s at a batch of {results['floor']['best_batch']}): "
            f"**{whole / floor:.0%} end to end** (target {TARGET_SHARE:.0%}: "
            f"{'met' if whole / floor >= TARGET_SHARE else 'not met'}), {steady / floor:.0%} from the first photo "
            f"to the last; the model waited {results['cli'].get('model_waited_s', 0.0):.1f} s for decoded photos."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.collections", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--variant", choices=list(VARIANTS), help="run one, in this process")
    parser.add_argument("--size", type=int, help="the first N photos only (default: all)")
    args = parser.parse_args()
    files = collection(args.size)
    if args.variant:
        print(RESULT + json.dumps(run_variant(args.variant, files)))
        return
    # A rerun of some variants replaces only their results; rows of another collection are kept but not shown.
    saved = OUT.with_suffix(".json")
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for name in args.variants:
        wait_until_quiet()  # each variant starts at an idle machine's load, not at the previous variant's
        results[name] = measure(name, args.size)
        print(name, {k: v for k, v in results[name].items() if k != "summary"}, file=sys.stderr)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results, indent=1))
    write_table(table({name: results[name] for name in VARIANTS if name in results}, files), OUT)


if __name__ == "__main__":
    main()
