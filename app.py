"""Bear classifier: a Gradio app around a fastai model (fast.ai "Practical Deep Learning", lesson 2).

`load_learner` once at start-up, predict per image. Run locally with `python app.py`; on a Space this
file is the entry point. Requests that arrive together share one forward pass.
"""
import os
from pathlib import Path

import gradio as gr

from bear_classifier import feedback, limits, serving
from bear_classifier.components import Probabilities, UploadedImage

predictor, facts = serving.load()  # load_learner once, at start-up
EXAMPLES = sorted(str(p) for p in Path(__file__).with_name("examples").glob("*.jpg"))
BATCH = 16 if os.environ.get("BEAR_BATCH", "1") == "1" else 1  # BEAR_BATCH=0: one photo per forward pass
batcher = serving.Batcher(predictor, max_batch=BATCH)
reviews = feedback.ReviewLog(hub_repo=os.environ.get("BEAR_FEEDBACK_REPO"))
# Uploads are people's photos, and a Space runs for weeks: delete them after this many seconds
# (flagged ones are copied to the review folder first).
UPLOAD_TTL = int(os.environ.get("BEAR_UPLOAD_TTL", "3600"))
MAX_FILE_BYTES = 10 * 2**20


def classify(image: str | serving.ImageError, request: gr.Request) -> tuple:
    answer = batcher.classify(image)
    if answer.details["error"] is None:  # what a "Wrong?" flag from this session may refer to
        reviews.remember(request.session_hash if request else None, image, answer.details, answer.probabilities[1])
    return answer.as_outputs()


demo = gr.Interface(
    fn=classify,
    inputs=UploadedImage(type="filepath", label="Photo of a bear", sources=["upload", "webcam", "clipboard"]),
    outputs=[
        Probabilities(label="Probabilities", num_top_classes=len(predictor.vocab)),
        gr.Markdown(label="Verdict"),
        gr.JSON(label="Details", visible=False),  # for API callers: label, out_of_domain, error
    ],
    examples=EXAMPLES,
    concurrency_limit=BATCH,  # requests handled at once: those waiting share the next forward pass
    api_name="predict",
    title="Grizzly, black or teddy?",
    description=serving.description(facts),
    article=serving.article(facts),
    flagging_mode="manual",
    flagging_options=feedback.flag_options(predictor.vocab),
    flagging_dir=str(feedback.review_dir()),
    flagging_callback=reviews,
    delete_cache=(UPLOAD_TTL, UPLOAD_TTL),
)
demo.queue(max_size=4 * BATCH + 16)  # an unbounded queue can be flooded until Gradio stops it for everyone

if __name__ == "__main__":
    demo.launch(
        max_file_size=MAX_FILE_BYTES,
        show_error=False,  # callers see our own ImageError messages, never tracebacks, paths or commands
        enable_monitoring=False,  # /monitoring is public on a Space
        app_kwargs={"middleware": [limits.middleware(MAX_FILE_BYTES)]},
    )
