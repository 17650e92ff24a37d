"""Bear classifier: the code shared by training.ipynb, app.py, the tests and the benchmarks, in five wings.

    model/      a photo in, an answer out: the input gate, the network's input, the predictor and its guard, the
                model files and the card's facts
    web/        the public page's request path: limits, clients' shares, uploads, components, "Wrong?" flags
    training/   what training.ipynb does: data, baselines, recipes, candidates and the rule, evaluation, export,
                the model card
    ship/       from a model to a Space: the Hub, the Space's files, the check that runs them, deploy
    batch/      the app's answers for many photos, on one machine or a Ray cluster

At the root, what the wings share: `settings` (every BEAR_* variable, read once), `page` (every word a visitor, an API
caller or a reader of the card reads), `files` (a file's SHA-256; a new version renamed into place whole), `serving`
(which model to load, and an answer in the page's words) and `launch` (what app.py adds to serve in public). Imports
point one way (tests/test_imports.py): model reaches no other wing, and the serving side never reaches training.

One request, from Gradio's worker thread to the inference thread and back:

    web.limits.BodyLimits          exact routes, body caps, one file per upload, no URLs, requests open and events
                                   queued per client, each client's share of joins and upload bytes (web.clients)
    web.components.UploadedImage   only files uploaded here (model.images.uploaded_file)
    app.classify_image -> launch.Service.classify -> serving.Answers.answer   known content? answered from memory
        -> model.decoding.DecoderPool.decode   a worker process: model.images.open_image under a CPU/memory budget,
                                               resized to the network's sizes; its CPU time charged to the client
        -> serving.classify -> model.predictor.Predictor.predict_batch  --one hop-->  transforms, network, guard,
                                                                                      for every request waiting
    serving.format_answer / refusal  <-------------------------------------------------  Prediction | ImageError
    web.feedback.ReviewLog.remember   (what a "Wrong?" flag of this session may refer to)
    web.uploads.UploadFolder          running byte count, small evicting shares, leftovers, the lifetime sweep
"""

import warnings

# fastai's layers.py compiles two functions with torch.jit.script when it is imported, which torch deprecates:
# a FutureWarning at every start that is fastai's to change and nothing for our users to act on. Only that one.
warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
