"""fast.ai lesson 2's image classifier (the bear classifier, or your own: README, "Make it yours") as a Gradio app.
Settings: README; every word the page shows: bear_classifier/page.py."""

from bear_classifier import uploads, zerogpu
from bear_classifier.settings import Settings

uploads.own_folder()  # before gradio is imported: a folder of the app's own, deleted when it stops
settings = Settings.from_env()  # every BEAR_* variable, read once
zerogpu.prepare(settings)  # on ZeroGPU, `spaces` before gradio and torch, and the GPU function it requires

# isort: split
import gradio as gr
from gradio.utils import get_upload_folder

from bear_classifier import clients, feedback, limits, page, serving
from bear_classifier.components import PAGE_CSS, Interface, Probabilities, UploadedImage

model, card = serving.load(settings)  # after checking model.pkl against its card; from the cache when it can
categories = model.vocab
subject = page.Subject.of(card)  # what the photos show, the title and description: the card's, as trained
decoders = model.decoder_pool(settings.decode_workers, settings.budget)  # decoding under a budget, off every lock
quotas = clients.Quotas(settings.rates)  # each client address's share
answers = serving.Answers(model, decoders, quotas)  # remembered by content: the same photo again costs nothing
reviews = feedback.ReviewLog(
    settings.feedback_repo,
    max_bytes=settings.review_max_mb * 2**20,
    quotas=quotas,
    trust_forwarded=settings.on_space,
    review_copy=decoders.review_copy,
)


def classify_image(img: str | serving.ImageError, request: gr.Request) -> tuple:
    answer = answers.answer(img, clients.of_request(request, settings.on_space))
    probabilities = answer.probabilities[1] if answer.probabilities else None  # None: the upload was refused
    reviews.remember(request, img, probabilities, answer.details)  # what a "Wrong?" flag of this visitor may refer to
    return answer.as_outputs()


demo = Interface(
    fn=classify_image,
    inputs=UploadedImage(type="filepath", label=page.upload_label(subject), sources=["upload", "webcam", "clipboard"]),
    outputs=[
        Probabilities(label=page.OUTPUT_LABELS[0], num_top_classes=len(categories)),
        gr.Markdown(label=page.OUTPUT_LABELS[1]),
        gr.JSON(label=page.OUTPUT_LABELS[2], visible=False),
    ],
    examples=serving.EXAMPLES,
    api_name="predict",
    title=subject.title,
    description=page.description(card),
    article=page.article(card),
    # Production extras: requests handled at once (they share forward passes), "Wrong?" flags kept for review.
    concurrency_limit=settings.max_batch_size,
    flagging_mode="manual",
    flagging_options=page.flag_options(categories),
    flagging_dir=str(settings.review_dir),
    flagging_callback=reviews,
)
# Bounded: an unbounded queue can be flooded to a stop. api_open=False: the queued endpoint cannot be called
# around the queue (Gradio's default only on a Space).
demo.queue(max_size=4 * settings.max_batch_size + 16, api_open=False)
# Uploads are deleted after their lifetime (tracked by Gradio or not), the folder is capped; the examples stay.
upload_folder = uploads.UploadFolder(
    get_upload_folder(),
    settings.upload_max_mb * 2**20,
    settings.upload_ttl,
    keep=lambda: set().union(*(getattr(block, "keep_in_cache", set()) for block in demo.blocks.values())),
)

if __name__ == "__main__":
    uploads.stop_on_sigterm()
    upload_folder.start()
    try:
        demo.launch(
            max_file_size=limits.MAX_FILE_BYTES,
            css=PAGE_CSS,
            show_error=False,  # callers see our own ImageError messages, never tracebacks, paths or commands
            enable_monitoring=False,  # /monitoring would be public on a Space
            # Exact routes, body caps, one file per upload, no URL paths, each client's share.
            app_kwargs={
                "middleware": [limits.middleware(demo, quotas, upload_folder, trust_forwarded=settings.on_space)]
            },
        )
    finally:
        upload_folder.remove()  # visitors' photos never outlive the app
