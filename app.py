"""Bear classifier: a Gradio app around a fastai model (fast.ai "Practical Deep Learning", lesson 2).

`load_learner` once at start-up, predict per image. Run locally with `python app.py`; on a Space this
file is the entry point. Calls from `gradio_client` that arrive together share one forward pass.
"""
import os
from pathlib import Path

import gradio as gr

from bear_classifier import feedback, serving
from bear_classifier.components import UploadedImage

predictor, facts = serving.load()  # load_learner once, at start-up
EXAMPLES = sorted(str(p) for p in Path(__file__).with_name("examples").glob("*.jpg"))
BATCH = os.environ.get("BEAR_BATCH", "1") == "1"  # BEAR_BATCH=0 serves one request at a time
# Uploads are people's photos, and a Space runs for weeks: delete them after this many seconds
# (flagged ones are copied to the review folder first).
UPLOAD_TTL = int(os.environ.get("BEAR_UPLOAD_TTL", "3600"))


def predict(images: list) -> tuple[list, list, list]:
    """Batched: Gradio passes the images of all waiting requests, we return one list per output."""
    answers = serving.classify_all(predictor, images)
    return tuple(list(outputs) for outputs in zip(*(a.as_outputs() for a in answers)))


demo = gr.Interface(
    fn=predict,
    inputs=UploadedImage(type="filepath", label="Photo of a bear", sources=["upload", "webcam", "clipboard"]),
    outputs=[
        gr.Label(label="Probabilities", num_top_classes=len(predictor.vocab)),
        gr.Markdown(label="Verdict"),
        gr.JSON(label="Details", visible=False),  # for API callers: label, out_of_domain, error
    ],
    examples=EXAMPLES,
    batch=True,
    max_batch_size=16 if BATCH else 1,
    api_name="predict",
    title="Grizzly, black or teddy?",
    description=serving.description(facts),
    article=serving.article(facts),
    flagging_mode="manual",
    flagging_options=feedback.flag_options(predictor.vocab),
    flagging_dir=str(feedback.review_dir()),
    flagging_callback=feedback.ReviewLog(hub_repo=os.environ.get("BEAR_FEEDBACK_REPO")),
    delete_cache=(UPLOAD_TTL, UPLOAD_TTL),
)

if __name__ == "__main__":
    demo.launch(max_file_size="10mb", show_error=True)
