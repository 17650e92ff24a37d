"""The rows `python -m bear_classifier.batch.classify` writes, one per photo, as CSV, JSON Lines or Parquet
(chosen by the output's extension), and what a resumed run reads back from them.

CSV and JSON Lines are appended to batch by batch, so a killed run keeps what it wrote (a half-written
last line is dropped on `--resume`). Parquet has no append: rows go to `<out>.partial`, which replaces
`<out>` when the file is closed (also on Ctrl-C), so `<out>` is always a complete Parquet file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bear_classifier.model.images import ImageError

if TYPE_CHECKING:  # the decoding workers import this module: not torch and fastai with it
    from bear_classifier.model.predictor import Prediction

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PARQUET_ROW_GROUP = 4096  # rows buffered per Parquet row group (a batch of 16 would make a slow file to read)

Row = dict[str, Any]


class ResultsError(ValueError):
    """The output file cannot be written or resumed; the message says what to do."""


def columns(vocab: Sequence[str]) -> list[str]:
    return ["path", "label", *(f"prob_{label}" for label in vocab), "out_of_domain", "ood_score", "error"]


def row(path: str, result: Prediction | ImageError, vocab: Sequence[str]) -> Row:
    """A photo's row: the prediction, or the error that refused it (the other fields empty)."""
    if isinstance(result, ImageError):
        return dict.fromkeys(columns(vocab)) | {"path": path, "error": str(result)}
    return {
        "path": path,
        "label": result.label,
        **{f"prob_{label}": result.probabilities[label] for label in vocab},
        "out_of_domain": result.out_of_domain,
        "ood_score": result.ood_score,
        "error": None,
    }


def output_format(out: Path) -> str:
    try:
        return FORMATS[out.suffix.lower()]
    except KeyError:
        raise ResultsError(
            f"Cannot tell the output format from {out.name!r}: end it in .csv, .jsonl or .parquet."
        ) from None


def arrow_schema(vocab: Sequence[str]):
    import pyarrow as pa

    types = {"out_of_domain": pa.bool_(), "ood_score": pa.float64(), **{f"prob_{v}": pa.float64() for v in vocab}}
    return pa.schema([(name, types.get(name, pa.string())) for name in columns(vocab)])


def read_rows(out: Path, vocab: Sequence[str]) -> list[Row]:
    """The rows in `out` (none when it does not exist), typed as `row` makes them, in any of the formats."""
    if not out.exists():
        return []
    kind = output_format(out)
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(out)
        except Exception as e:
            raise ResultsError(f"{out} is not a Parquet file we can read ({e}): move it away to start over.") from e
        _check_columns(out, table.column_names, vocab)
        return table.to_pylist()
    _drop_partial_line(out)
    with out.open(newline="") as file:
        if kind == "jsonl":
            rows = [json.loads(line) for line in file if line.strip()]
            if rows:
                _check_columns(out, list(rows[0]), vocab)
            return rows
        reader = csv.DictReader(file)
        _check_columns(out, reader.fieldnames or [], vocab)
        return [_typed(line) for line in reader]


def _typed(line: dict[str, str]) -> Row:
    """A CSV line's text as `row`'s values (an empty field is None)."""
    typed: Row = {}
    for name, text in line.items():
        if not text:
            typed[name] = None
        elif name == "out_of_domain":
            typed[name] = text == "True"
        elif name == "ood_score" or name.startswith("prob_"):
            typed[name] = float(text)
        else:
            typed[name] = text
    return typed


def done_paths(out: Path, vocab: Sequence[str]) -> set[str]:
    """The photos that `out` already has a row for."""
    return {r["path"] for r in read_rows(out, vocab)}


def _check_columns(out: Path, found: Sequence[str], vocab: Sequence[str]) -> None:
    if list(found) != columns(vocab):
        raise ResultsError(
            f"{out} has the columns {list(found)}, not this model's {columns(vocab)}: "
            "resume it with the model that started it, or write to another file."
        )


def _drop_partial_line(out: Path) -> None:
    """A run killed mid-write leaves a last line without its newline: cut it, so that photo runs again."""
    with out.open("rb+") as file:
        data = file.read()
        if data and not data.endswith(b"\n"):
            file.truncate(data.rfind(b"\n") + 1)


def check_out(out: Path, resume: bool) -> None:
    """Refuse an output we would not write, before anything is classified: unknown format, or overwriting."""
    output_format(out)
    if out.exists() and not resume:
        raise ResultsError(f"{out} already exists: add --resume to continue it, or remove it to start over.")


class ResultsFile:
    """Rows to `out`, appended to it when `resume`; `close()` leaves a complete file."""

    def __init__(self, out: Path, vocab: Sequence[str], resume: bool):
        check_out(out, resume)
        self.out, self.kind, self.vocab = out, output_format(out), list(vocab)
        self._buffer: list[Row] = []
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            self._partial = out.with_name(out.name + ".partial")
            self._writer = pq.ParquetWriter(self._partial, arrow_schema(vocab))
            if out.exists():  # resumed: the new file starts with the old rows
                self._writer.write_table(pq.read_table(out, schema=arrow_schema(vocab)))
            return
        new = not out.exists() or out.stat().st_size == 0
        self._file = out.open("a", newline="")
        if self.kind == "csv":
            self._csv = csv.DictWriter(self._file, columns(vocab))
            if new:
                self._csv.writeheader()

    def write(self, rows: Sequence[Row]) -> None:
        if self.kind == "parquet":
            self._buffer += rows
            if len(self._buffer) >= PARQUET_ROW_GROUP:
                self._flush_parquet()
            return
        if self.kind == "csv":
            self._csv.writerows(rows)
        else:
            self._file.writelines(json.dumps(r) + "\n" for r in rows)
        self._file.flush()

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=arrow_schema(self.vocab)))
            self._buffer = []

    def close(self) -> None:
        if self.kind != "parquet":
            self._file.close()
            return
        self._flush_parquet()
        self._writer.close()
        self._partial.replace(self.out)
