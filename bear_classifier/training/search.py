"""Gathering a labelled data set from web image search, the lesson's way (needs internet).

`gather` is the whole step: one search per label, parallel downloads with a timeout, then every file
is verified by `data.verify_folder(delete=True)`. The search itself is a small swappable function
(DuckDuckGo through the maintained `ddgs` package by default), so everything around the network
call can be tested offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from fastai.vision.utils import download_images

from bear_classifier.training.data import DataError

DEFAULT_TERMS = {"grizzly": "grizzly bear", "black": "black bear", "teddy": "teddy bear"}

SearchFn = Callable[[str, int], list[str]]


def search_images(term: str, max_images: int) -> list[str]:
    """Image URLs for `term` from DuckDuckGo image search."""
    from ddgs import DDGS

    return [hit["image"] for hit in DDGS().images(term, max_results=max_images) if hit.get("image")]


def gather(
    root: Path,
    terms: dict[str, str] | None = None,
    per_term: int = 150,
    search: SearchFn = search_images,
    timeout: float = 10,
    workers: int = 8,
) -> dict[str, int]:
    """Download up to `per_term` images per label into `root/<label>/`; returns files per label.

    A label whose search fails is reported and left empty instead of ending the whole run;
    `data.verify_folder` then says which classes are missing. When every search fails (offline), it raises
    `DataError` and leaves no empty folders behind.
    """
    root = Path(root)
    downloaded = {}
    for label, term in (terms or DEFAULT_TERMS).items():
        dest = root / label
        dest.mkdir(parents=True, exist_ok=True)
        try:
            urls = search(term, per_term)[:per_term]
        except Exception as e:  # the search service is outside our control: rate limits, outages
            print(f"search for {term!r} failed: {e}")
            urls = []
        download_images(dest, urls=urls, timeout=timeout, n_workers=workers)
        downloaded[label] = sum(1 for p in dest.iterdir() if p.is_file())
    if not any(downloaded.values()):
        _remove_empty(root, downloaded)  # so that the next run searches again instead of finding an empty folder
        raise DataError(
            f"Web image search downloaded no photos into {root} (is there an internet connection?). "
            f"Put your own photos in {root}/<label>/ and run again, or try again later."
        )
    return downloaded


def _remove_empty(root: Path, labels: dict[str, int]) -> None:
    for folder in [root / label for label in labels] + [root]:
        with contextlib.suppress(OSError):  # not empty: something else lives there, keep it
            folder.rmdir()
