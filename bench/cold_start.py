"""Cold start side by side: our app against the course's app on the same model.pkl, process start until
the first /predict answer, interleaved in one run.

    python -m bench.cold_start [--rounds 3]

The course app is the lesson's dozen lines (`load_learner`, `learn.predict`, `gr.Interface`), written to a
temporary folder and started the same way as ours. Ours is measured twice per round: with its cache as
after a first start (the ONNX graphs and the `served` record, kept by the model's SHA-256: it serves without
importing fastai or timm), and with an empty cache (`BEAR_CACHE` in a fresh folder: the child-process check and the ONNX
export run), which is a Space's first start after a restart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gradio_client import Client, handle_file

from bear_classifier.settings import EXAMPLES_DIR, ROOT
from tests.support.appserver import free_port

COURSE_APP = """\
import timm  # noqa: F401  the learner's body is a timm model
import gradio as gr
from fastai.vision.all import load_learner

learn = load_learner({model!r})
categories = learn.dls.vocab


def classify_image(img):
    pred, idx, probs = learn.predict(img)
    return dict(zip(categories, map(float, probs)))


gr.Interface(fn=classify_image, inputs=gr.Image(type="filepath"), outputs=gr.Label(), api_name="predict").launch()
"""


def first_answer(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> float:
    """Seconds from starting `command` until its /predict answers an example photo."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, **env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{command} exited with {process.returncode}:\n{log.read().decode()[-3000:]}")
                if time.perf_counter() - started > timeout:
                    raise TimeoutError(f"{command} did not answer within {timeout} s")
                try:
                    urllib.request.urlopen(url, timeout=2)
                except OSError:
                    time.sleep(0.1)
                    continue
                Client(url, verbose=False).predict(
                    handle_file(str(EXAMPLES_DIR / "grizzly_bear.jpg")), api_name="/predict"
                )
                return time.perf_counter() - started
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        course = tmp / "course_app.py"
        course.write_text(COURSE_APP.format(model=str(ROOT / "model.pkl")))
        warm_cache = tmp / "cache"
        ours = [sys.executable, "app.py"]
        review = {"BEAR_REVIEW_DIR": str(tmp / "review"), "GRADIO_TEMP_DIR": str(tmp / "uploads")}
        first_answer(ours, ROOT, {**review, "BEAR_CACHE": str(warm_cache)})  # fills the cache; not counted
        runs: dict[str, list[float]] = {
            "our app.py (ONNX graphs and served record cached by SHA-256: no fastai, no timm)": [],
            "our app.py, empty cache (first start: child-process check, ONNX export)": [],
            "course app (load_learner + learn.predict + gr.Interface)": [],
        }
        for round_ in range(args.rounds):
            for name, (command, cwd, env) in zip(
                runs,
                [
                    (ours, ROOT, {**review, "BEAR_CACHE": str(warm_cache)}),
                    (ours, ROOT, {**review, "BEAR_CACHE": str(tmp / f"empty{round_}")}),
                    ([sys.executable, str(course)], tmp, {"GRADIO_TEMP_DIR": str(tmp / "uploads")}),
                ],
            ):
                runs[name].append(first_answer(command, cwd, env))
                print(f"{name}: {runs[name][-1]:.1f} s", flush=True)
    print("\n| app | process start to first /predict answer, median (s) | runs (s) |\n|---|---|---|")
    for name, seconds in runs.items():
        print(f"| {name} | {statistics.median(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} |")
    return runs


if __name__ == "__main__":
    main()
