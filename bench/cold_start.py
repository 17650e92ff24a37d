"""Cold start side by side: our app against the course's app on the same model.pkl, process start until
the first /predict answer, interleaved in one run.

    python -m bench.cold_start [--rounds 3]

The course app is the lesson's dozen lines (`load_learner`, `learn.predict`, `gr.Interface`), written to a
temporary folder and started the same way as ours. Ours is measured as a Space's first start after a restart,
rebuild or wake-up: an empty cache (`BEAR_CACHE` in a fresh folder) and the served files beside model.pkl that
deploy ships (`servedfiles`, made first if missing: ONNX graphs and the plain record, no fastai, no unpickling).
Whether the start imported fastai is read from its log ("from the served files beside it").
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

from bear_classifier.model import card, servedfiles
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


def first_answer(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> tuple[float, str]:
    """Seconds from starting `command` until its /predict answers an example photo, and its log."""
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
                seconds = time.perf_counter() - started
                log.seek(0)
                return seconds, log.read().decode(errors="replace")
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
    servedfiles.make(ROOT / "model.pkl", card.read(ROOT / "model_card.md"))  # what deploy ships beside it; not timed
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        course = tmp / "course_app.py"
        course.write_text(COURSE_APP.format(model=str(ROOT / "model.pkl")))
        ours = [sys.executable, "app.py"]
        review = {"BEAR_REVIEW_DIR": str(tmp / "review"), "GRADIO_TEMP_DIR": str(tmp / "uploads")}
        runs: dict[str, list[float]] = {
            "our app.py, a Space's first start (empty cache, served files beside model.pkl)": [],
            "course app (load_learner + learn.predict + gr.Interface)": [],
        }
        for round_ in range(args.rounds):
            for name, (command, cwd, env) in zip(
                runs,
                [
                    (ours, ROOT, {**review, "BEAR_CACHE": str(tmp / f"empty{round_}")}),
                    ([sys.executable, str(course)], tmp, {"GRADIO_TEMP_DIR": str(tmp / "uploads")}),
                ],
            ):
                seconds, log = first_answer(command, cwd, env)
                runs[name].append(seconds)
                fastai = "fastai not imported" if "from the served files beside it" in log else "fastai imported"
                print(f"{name}: {seconds:.1f} s ({fastai})", flush=True)
    print("\n| app | process start to first /predict answer, median (s) | runs (s) |\n|---|---|---|")
    for name, seconds in runs.items():
        print(f"| {name} | {statistics.median(seconds):.1f} | {', '.join(f'{s:.1f}' for s in seconds)} |")
    return runs


if __name__ == "__main__":
    main()
