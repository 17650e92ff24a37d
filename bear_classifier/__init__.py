"""Bear classifier: the code shared by training.ipynb, app.py, the tests and the benchmarks.

Training side: `search` (web image search) -> `data` (verify files, DataLoaders) -> `baseline`
(pixel similarity) -> `imagenet` (the pretrained network zero-shot, and the out-of-domain guard
fitted on the training photos) -> `train` (linear probe or fine-tune, error analysis) -> `export`
(model.pkl, with the guard inside) -> `evaluate` (validation and external photos) -> `card` (model
card) -> `hub` (publish).
Serving side: `images` (safe decoding) -> `predictor` (fast inference + out-of-domain flag) ->
`feedback` (flags for human review); `hub` and `export` load a pinned, checksummed model.
"""
