"""Bear classifier: the code shared by training.ipynb, app.py, the tests and the benchmarks.

Training side: `search` (web image search) -> `data` (verify files, DataLoaders) -> `baseline`
(pixel similarity) -> `imagenet` (the pretrained network and its offline weights, read zero-shot; the
out-of-domain guard fitted on the training photos and attached to the learner) -> `train` (zero-shot
head, linear probe or fine-tune, error analysis) -> `export` (writes a portable model.pkl, with the guard inside)
-> `candidates` (every candidate model measured on the same photos) -> `choice` (the rule that picks one, and the
run's warnings) -> `evaluate` (validation and external photos, into an `evaluation.Evaluation`) -> `card` (model card) -> `promote` (a run's model becomes the
shipped one) -> `hub` (publish) -> `deploy` (the Space); `notebook` runs training.ipynb headless (papermill).
`examples` (the page's examples from the student's own photos). `page` holds every word a visitor, an API
caller or a reader of the Space or the card reads, written from the card's subject and classes.
`transforms` (the learner's validation-time transforms, decoded photo to network input; `pixels`: the standard
ones without fastai) is shared by both sides.
Both sides write and hash files through `files` (a file's SHA-256; a new version renamed into place whole).
Imports point one way: the serving side never imports a training module (tests/test_imports.py).

Serving side, one request (`settings` read once by app.py, `zerogpu` imports `spaces` on ZeroGPU only, `machine` the
CPUs and memory the container allows; `serving.load`
checks model.pkl first, `modelfile`, then serves without fastai from the ONNX graphs and `served` record made beside
model.pkl by `servedfiles` (deploy ships them: a Space's first start), or from the cache's when an earlier start with
this file and environment wrote them):

    Gradio worker thread                                     inference thread (predictor.Predictor)
    limits.BodyLimits      exact routes, body caps, one file per upload, no URLs, requests open and
                           events queued per client, each client's share of joins and upload bytes
                           (clients.Quotas)
    components.UploadedImage.preprocess    only files uploaded here (images.uploaded_file)
    app.classify_image -> serving.Answers.answer   known content? answered from memory
        -> decoding.DecoderPool.decode   a worker process: images.open_image under a CPU/memory budget,
                                         resized to the network's sizes; its CPU time charged to the client
        -> serving.classify -> Predictor.predict_batch  --one hop-->  transforms + network + guard,
                                                                      for every request waiting
    serving.format_answer / refusal  <-------------------------------------------   Prediction | ImageError
    feedback.ReviewLog.remember    (what a "Wrong?" flag of this session may refer to)
    uploads.UploadFolder           running byte count, small evicting shares, leftovers, the lifetime sweep

Batch side: `classify` (`python -m bear_classifier.classify`: folders, globs and files to a row per photo,
decoded by the app's `decoding.DecoderPool` under its budgets, through the same `images.open_image` and `Predictor`; a copy
of bytes already answered is answered from memory), `results` (the rows
as CSV, JSON Lines or Parquet; --resume), `classify_ray` (the same rows on a Ray cluster, Ray Data),
`classify_common` (what both engines share).
"""

import warnings

# fastai's layers.py compiles two functions with torch.jit.script when it is imported, which torch deprecates:
# a FutureWarning at every start that is fastai's to change and nothing for our users to act on. Only that one.
warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
