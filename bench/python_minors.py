"""Does a model.pkl written under one Python minor load and predict under another?

    python -m bench.python_minors --build     # make /tmp/py312, /tmp/py313 from pyenv, pinned like requirements.txt
    python -m bench.python_minors             # export a smoke learner under each minor, load + predict under each

For every interpreter found (this venv's Python, and $BEAR_VENVS/py3XX, default /tmp/py3XX) it trains a
tiny learner on synthetic pictures and exports it twice: `portable` (`export.save`, the default) and
`fastai` (plain `learn.export`, cloudpickle as fastai ships it). Then every interpreter loads every file
with plain `load_learner` (never importing bear_classifier) and runs `learn.predict` on
examples/black_bear.jpg, in its own process: a segfault is reported, not fatal. The shipped model.pkl
is tried too. Probabilities are compared with those under the exporting minor.

Last run (`python -m bench.python_minors --build`, pins of requirements.txt, Python 3.11.7 / 3.12.1 /
3.13.0, 2 shared vCPUs, 14 min; the 3.13-written fastai export fails on 3.11/3.12 because its pickle
names `pathlib._local`, which fastai's load_learner hides behind an UnboundLocalError):

    exported (minor, how)    loaded by load+predict  max |dp| vs exporter   PILImage.create afterwards / error
    shipped model.pkl        3.11      ok            0                     library
    shipped model.pkl        3.12      FAILED        -                     signal 11: File "<dynamic-code>", line 122 in create
    shipped model.pkl        3.13      FAILED        -                     exit 1: TypeError: can only concatenate str (not "dict") to str
    3.11 fastai              3.11      ok            0                     library
    3.11 fastai              3.12      FAILED        -                     signal 11: File "<dynamic-code>", line 122 in create
    3.11 fastai              3.13      FAILED        -                     exit 1: TypeError: can only concatenate str (not "dict") to str
    3.11 portable            3.11      ok            0                     library
    3.11 portable            3.12      ok            0                     library
    3.11 portable            3.13      ok            0                     library
    3.12 fastai              3.11      FAILED        -                     signal 11: File "<dynamic-code>", line 122 in create
    3.12 fastai              3.12      ok            0                     library
    3.12 fastai              3.13      FAILED        -                     exit 1: TypeError: can only concatenate str (not "dict") to str
    3.12 portable            3.11      ok            0                     library
    3.12 portable            3.12      ok            0                     library
    3.12 portable            3.13      ok            0                     library
    3.13 fastai              3.11      FAILED        -                     exit 1: UnboundLocalError: cannot access local variable 'res' where it is not associated with a value
    3.13 fastai              3.12      FAILED        -                     exit 1: UnboundLocalError: cannot access local variable 'res' where it is not associated with a value
    3.13 fastai              3.13      ok            0                     library
    3.13 portable            3.11      ok            0                     library
    3.13 portable            3.12      ok            0                     library
    3.13 portable            3.13      ok            0                     library
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bear_classifier.settings import EXAMPLES_DIR, ROOT
from tests.support.minors import MINORS, build, venv_dir

IMAGE = EXAMPLES_DIR / "black_bear.jpg"


def interpreters() -> dict[str, str]:
    """{minor: python} for this interpreter and every built venv."""
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    for minor in MINORS:
        python = venv_dir(minor) / "bin" / "python"
        if minor not in found and python.exists():
            found[minor] = str(python)
    return dict(sorted(found.items()))


LOAD = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import timm  # noqa: F401
from fastai.vision.all import load_learner, PILImage
learn = load_learner(sys.argv[1], cpu=True)
_, _, probs = learn.predict(sys.argv[2])
print(json.dumps({"probs": [round(float(p), 6) for p in probs], "create": PILImage.create.__func__.__code__.co_filename}))
"""


def load_and_predict(python: str, model: Path) -> dict:
    """Plain load_learner + learn.predict in a fresh process, outside the repo (no bear_classifier)."""
    with tempfile.TemporaryDirectory() as cwd:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cmd = [python, "-X", "faulthandler", "-c", LOAD, str(Path(model).absolute()), str(IMAGE)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        lines = done.stderr.strip().splitlines() or ["?"]
        # a crash: the innermost frame faulthandler printed; an exception: its last line
        frames = [line.strip() for line in lines if line.strip().startswith("File ")] if done.returncode < 0 else []
        return {"ok": False, "error": f"{how}: {(frames or lines)[0 if frames else -1][:110]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"ok": True, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="store_true", help="build the missing /tmp/py3XX venvs first")
    parser.add_argument("--out", type=Path, help="keep the exported files here (default: a temp dir)")
    args = parser.parse_args()
    if args.build:
        build()
    pythons = interpreters()
    print("interpreters:", ", ".join(f"{m} ({p})" for m, p in pythons.items()), flush=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="python-minors-"))
    out.mkdir(parents=True, exist_ok=True)
    for minor, python in pythons.items():
        print(f"exporting a smoke learner under {minor} ...", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([python, "-m", "tests.support.minors", str(out)], cwd=ROOT, env=env, check=True)
    models = [(ROOT / "model.pkl", "shipped model.pkl")] + [
        (out / f"{minor}-{kind}.pkl", f"{minor} {kind}") for minor in pythons for kind in ("fastai", "portable")
    ]
    print(
        f"\n{'exported (minor, how)':<24} {'loaded by':<9} {'load+predict':<13} max |dp| vs exporter   PILImage.create afterwards / error"
    )
    for model, name in models:
        results = {minor: load_and_predict(python, model) for minor, python in pythons.items()}
        exporter = name.split()[0] if name[0].isdigit() else "3.11"
        ref = results.get(exporter, {}).get("probs")
        for minor, r in results.items():
            if r["ok"]:
                diff = max(abs(a - b) for a, b in zip(r["probs"], ref)) if ref else float("nan")
                where = "library" if "site-packages" in r["create"] else r["create"]
                print(f"{name:<24} {minor:<9} {'ok':<13} {diff:<21.2g} {where}")
            else:
                print(f"{name:<24} {minor:<9} {'FAILED':<13} {'-':<21} {r['error']}")
    print(f"\nfiles in {out}")


if __name__ == "__main__":
    main()
