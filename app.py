"""Grizzly, black or teddy? fast.ai lesson 2's bear classifier as a Gradio app. Settings: README."""

import spaces  # ZeroGPU, the Space hardware of free accounts, needs it imported first; elsewhere it does nothing

# isort: split
import gradio as gr

from bear_classifier import feedback, limits, serving
from bear_classifier.components import Probabilities, UploadedImage
from bear_classifier.settings import Settings

settings = Settings.from_env()  # every BEAR_* variable, read once
model, card = serving.load(settings)  # load_learner once, after checking model.pkl against its card
categories = model.vocab
reviews = feedback.ReviewLog(settings.feedback_repo, max_bytes=settings.review_max_mb * 2**20)


def classify_image(img: str | serving.ImageError, request: gr.Request) -> tuple:
    answer = serving.classify(model, img)  # requests waiting together share one forward pass
    reviews.remember(request, img, answer)  # what a "Wrong?" flag from this visitor may refer to
    return answer.as_outputs()


@spaces.GPU(duration=5)
def zerogpu_requirement() -> None:
    """ZeroGPU stops an app without a @spaces.GPU function. Never called: inference stays on the CPU, where it was
    measured, so visitors spend no GPU quota and never wait for a GPU to be attached."""


demo = gr.Interface(
    fn=classify_image,
    inputs=UploadedImage(type="filepath", label="Photo of a bear", sources=["upload", "webcam", "clipboard"]),
    outputs=[
        Probabilities(label="Probabilities", num_top_classes=len(categories)),
        gr.Markdown(label="Verdict"),
        gr.JSON(label="Details", visible=False),
    ],
    examples=serving.EXAMPLES,
    api_name="predict",
    title="Grizzly, black or teddy?",
    description=serving.description(card),
    article=serving.article(card),
    # Production extras: requests handled at once (they share forward passes), "Wrong?" flags kept for
    # review, uploads deleted after a TTL.
    concurrency_limit=settings.max_batch_size,
    flagging_mode="manual",
    flagging_options=feedback.flag_options(categories),
    flagging_dir=str(settings.review_dir),
    flagging_callback=reviews,
    delete_cache=(settings.upload_ttl, settings.upload_ttl),
)
demo.queue(max_size=4 * settings.max_batch_size + 16)  # bounded: an unbounded queue can be flooded to a stop

if __name__ == "__main__":
    demo.launch(
        max_file_size=limits.MAX_FILE_BYTES,
        show_error=False,  # callers see our own ImageError messages, never tracebacks, paths or commands
        enable_monitoring=False,  # /monitoring would be public on a Space
        # Body caps, one file per upload, no URL paths, no calls around the queue.
        app_kwargs={"middleware": [limits.middleware(limits.queued_events(demo))]},
    )
