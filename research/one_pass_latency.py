"""Found: one pass at 224 px is 3.18x `learn.predict`, the shipped two passes 1.94x, on a busy machine (BENCHMARKS.md, issue 18, from commit c9bb317); the product's latency is re-measured by `python -m bench.latency`.

Our predict against learn.predict and the bare forward pass, for one or more model.pkl files, interleaved
in one process (`bench.latency`'s helpers; issue 18's one-pass check).

    python -m research.one_pass_latency [--model model.pkl] [--model runs/nb18/model.pkl] [--rounds 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bear_classifier import files
from bear_classifier.model import modelfile
from bear_classifier.model.predictor import Predictor
from bench.latency import EXAMPLES, guard_steps, table, time_variants, variants_for


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m research.one_pass_latency")
    parser.add_argument("--model", type=Path, action="append")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    results = {}
    for path in args.model or [Path("model.pkl")]:
        predictor = Predictor(modelfile.load(path))
        variants = {k: f for k, f in variants_for(predictor).items() if "PyTorch" not in k or "forward" in k}
        variants.update(guard_steps(predictor))
        results[f"{path} ({files.sha256(path)[:8]})"] = time_variants(variants, EXAMPLES, args.rounds)
    print(table(results))


if __name__ == "__main__":
    main()
