"""Bear classifier: the code shared by training.ipynb, app.py, the tests and the benchmarks.

Training side: `search` (web image search) -> `data` (verify files, DataLoaders) -> `baseline`
(pixel similarity) -> `train` (fine-tune, error analysis) -> `export` (model.pkl, with the `ood`
detector inside) -> `card` (model card) -> `hub` (publish).
Serving side: `images` (safe decoding) -> `predictor` (fast inference + out-of-domain flag) ->
`feedback` (flags for human review); `hub` and `export` load a pinned, checksummed model.
"""
