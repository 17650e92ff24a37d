"""Run training.ipynb headless, as papermill does, with errors written for people.

    python -m bear_classifier.notebook -p data_dir data/bears [-p external_dir data/external] [-p NAME VALUE ...]
        [--out runs/training.ipynb]

`-p` sets a parameter of the notebook's first cell, as papermill's `-p` does (values are read as Python
literals, anything else is a string); `show_cleaner` is False unless set. papermill's own command ends a
failed cell with a Python traceback of papermill itself; this one prints the cell's error (for example
"DataError: ... does not exist") and where the executed notebook with every output is, and exits with 1.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path

from .settings import ROOT

NOTEBOOK = ROOT / "training.ipynb"


def literal(value: str) -> object:
    """`8` -> 8, `None` -> None, `0.5` -> 0.5; anything that is not a Python literal stays a string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bear_classifier.notebook", description=__doc__.split("\n\n")[0])
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--out", type=Path, default=Path("runs/training.ipynb"), help="the executed notebook")
    args = parser.parse_args(argv)
    import papermill  # after parsing: --help needs no Jupyter

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # fastai's cleaner is for clicking in Jupyter; headless there is no one to click (top_losses.csv instead)
    parameters = {"show_cleaner": False} | {name: literal(value) for name, value in args.parameter}
    try:
        papermill.execute_notebook(str(NOTEBOOK), str(args.out), parameters=parameters)
    except papermill.PapermillExecutionError as error:
        print(f"\nevery cell's output, the full traceback too, is in {args.out}", file=sys.stderr)
        print(f"training stopped: {error.ename}: {error.evalue}", file=sys.stderr)  # last: where people look
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
