"""Run training.ipynb headless, as papermill does, with errors written for people.

    python -m bear_classifier.training.notebook -p data_dir data/bears [-p external_dir data/external] [-p NAME VALUE ...]
        [--out runs/training.ipynb]

`-p` sets a parameter of the notebook's first cell, as papermill's `-p` does (values are read as Python
literals, anything else is a string); `show_cleaner` is False unless set. papermill's own command ends a
failed cell with a Python traceback of papermill itself; this one prints the cell's error (for example
"DataError: ... does not exist") and where the executed notebook with every output is, and exits with 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bear_classifier.model import card
from bear_classifier.settings import ROOT
from bear_classifier.training import card_writer

NOTEBOOK = ROOT / "training.ipynb"


def literal(value: str) -> object:
    """`8` -> 8, `None` -> None, `0.5` -> 0.5; anything that is not a Python literal stays a string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def summary(facts: card.TrainingFacts, output_dir: Path) -> str:
    """What a headless run says at its end: the candidates, the choice and why, validation against zero-shot, the
    guard, the warnings, where the files are and how to ship them."""
    lines = [
        "",
        "=" * 20 + " summary " + "=" * 20,
        card_writer.choice_text(facts).strip() or f"recipe: {facts.recipe}",
        "",
    ]
    lines.append(
        f"validation: {_pct(facts.valid_accuracy)} ({facts.n_valid} photos); zero-shot reading: "
        f"{_pct(facts.zero_shot_accuracy)}"
        + (
            f"; external{f' ({facts.external_half} half)' if facts.external_half else ''}: "
            f"{_pct(facts.external_accuracy)} (zero-shot {_pct(facts.external_zero_shot_accuracy)})"
            if facts.external_accuracy is not None
            else ""
        )
    )
    guard = [f"threshold {facts.ood_threshold:.4f}", f"validation flagged {_pct(facts.valid_flagged)}"]
    if facts.external_bears_flagged is not None:
        guard.append(f"external in-domain flagged {_pct(facts.external_bears_flagged)}")
    if facts.not_bears_flagged:
        source, rate = min(facts.not_bears_flagged.items(), key=lambda item: item[1])
        guard.append(f"not-in-domain flagged, worst folder {_pct(rate)} ({source})")
    lines.append("guard: " + ", ".join(guard))
    if not facts.choice and facts.warnings:
        lines += ["warnings:", *(f"- {w}" for w in facts.warnings)]
    if facts.int8:
        lines.append(f"graphs: {facts.int8['ships']} serves ({facts.int8['reason']})")
    graphs = "".join(f", {output_dir}/{name}" for name in facts.graphs)
    lines += [
        f"files: {output_dir}/model.pkl, {output_dir}/model_card.md, {output_dir}/confusion_matrix.png{graphs}",
        f"to ship it: python -m bear_classifier.training.promote {output_dir}",
    ]
    return "\n".join(lines) + "\n"


def _pct(rate: float | None) -> str:
    return "not measured" if rate is None else f"{rate:.1%}"


def parameters_of(notebook: Path = NOTEBOOK) -> dict[str, object]:
    """The names its parameters cell sets, with their defaults (papermill's own reader trips on a comment's quote)."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.training.notebook", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--out", type=Path, default=Path("runs/training.ipynb"), help="the executed notebook")
    args = parser.parse_args(argv)
    import papermill  # after parsing: --help needs no Jupyter

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # fastai's cleaner is for clicking in Jupyter; headless there is no one to click (top_losses.csv instead)
    parameters = {"show_cleaner": False} | {name: literal(value) for name, value in args.parameter}
    known = parameters_of()
    if unknown := sorted(set(parameters) - set(known)):  # papermill would inject them silently, and train anyway
        print(f"unknown parameter {', '.join(unknown)}: the notebook takes {', '.join(known)}", file=sys.stderr)
        return 2
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(args.out), parameters=parameters)
    except papermill.PapermillExecutionError as error:
        print(f"\nevery cell's output, the full traceback too, is in {args.out}", file=sys.stderr)
        print(f"training stopped: {error.ename}: {error.evalue}", file=sys.stderr)  # last: where people look
        return 1
    run_dir = Path(str(parameters.get("run_dir") or known["run_dir"]))
    if (run_dir / "summary.md").is_file():
        print((run_dir / "summary.md").read_text())  # the notebook wrote it; its cells' output stays in --out
    return 0


if __name__ == "__main__":
    sys.exit(main())
