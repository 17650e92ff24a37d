"""fast.ai lesson 2's image classifier (the bear classifier, or your own: README, "Make it yours") as a Gradio app.
Settings: README; every word the page shows: bear_classifier/page.py."""

import os
import sys

from bear_classifier import machine, uploads, zerogpu
from bear_classifier.settings import Settings

uploads.own_folder()  # before gradio is imported: a folder of the app's own, deleted when it stops
# Gradio asks matplotlib for its backend at every request; resolving the default ("auto") imported pyplot into the
# first visitor's request (1.5 s on a busy machine). This page draws nothing.
os.environ.setdefault("MPLBACKEND", "agg")
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
host = machine.read()  # ZeroGPU documents neither its CPUs nor its memory: say what this one allows
machine.share_malloc_arenas()  # before Gradio's request threads: each would keep a heap of its own
workers = settings.decode_workers or host.decoders(settings.decode_memory_mb)
print(f"{host.describe()}; {workers} decoder workers", file=sys.stderr, flush=True)
quotas = clients.Quotas(settings.rates)  # each client address's share
decoders = model.decoder_pool(workers, settings.budget, quotas)  # under budgets, off every lock
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
    # Off, explicitly: on a Space Gradio would cache them (GRADIO_CACHE_EXAMPLES), and a cached example never reaches
    # classify_image, so its "Wrong?" flag would be refused; caching would also run every example at each wake-up.
    # An example clicked here costs one prediction once, then it is answered from memory (serving.Answers).
    cache_examples=False,
    api_name="predict",
    title=subject.title,
    description=page.description(card),
    article=page.article(card),
    # Production extras: requests handled at once (they share forward passes), "Wrong?" flags kept for review.
    concurrency_limit=settings.requests_at_once,
    flagging_mode="manual",
    flagging_options=page.flag_options(categories),
    flagging_dir=str(settings.review_dir),
    flagging_callback=reviews,
)
# Bounded: an unbounded queue can be flooded to a stop. api_open=False: the queued endpoint cannot be called
# around the queue (Gradio's default only on a Space).
demo.queue(max_size=4 * settings.max_batch_size + 16, api_open=False)
# Uploads are deleted after their lifetime (tracked by Gradio or not), the folder is capped and shared out
# (evicting); the examples stay.
upload_folder = uploads.UploadFolder(
    get_upload_folder(),
    settings.upload_max_mb * 2**20,
    settings.upload_ttl,
    keep=lambda: set().union(*(getattr(block, "keep_in_cache", set()) for block in demo.blocks.values())),
    unused_ttl=settings.upload_unused_ttl,
)

if __name__ == "__main__":
    # uvicorn's forwarded_allow_ips: the client is the rightmost X-Forwarded-For entry outside our own proxies (none
    # locally, so a caller's header is ignored; its default would trust any loopback caller's). Read at launch.
    os.environ["FORWARDED_ALLOW_IPS"] = settings.trusted_proxies
    uploads.stop_on_sigterm()
    upload_folder.start()
    try:
        demo.launch(
            max_file_size=limits.MAX_FILE_BYTES,
            css=PAGE_CSS,
            show_error=False,  # callers see our own ImageError messages, never tracebacks, paths or commands
            enable_monitoring=False,  # /monitoring would be public on a Space
            # Off, explicitly (a Space turns SSR on): its Node proxy would stand between every visitor and the app,
            # needs Node 24+, and gives a one-page app nothing a visitor notices; the tests run the page as served.
            ssr_mode=False,
            run_history=False,  # its routes and footer link are nothing this page uses (the allow-list answers 404)
            # Threads of Gradio's own for its functions (at 40 it shares anyio's 40 with Starlette's uploads): 32
            # requests waiting on their decodes must not leave uploads and page files without a thread.
            max_threads=settings.requests_at_once + 16,
            # Exact routes, body caps, one file per upload, no URL paths, each client's share.
            app_kwargs={
                "middleware": [
                    limits.middleware(
                        demo,
                        quotas,
                        upload_folder,
                        trust_forwarded=settings.on_space,
                        at_once=limits.AtOnce(
                            settings.streams_per_client,
                            settings.streams_total,
                            settings.queued_per_client,
                            settings.requests_for_new_clients,
                        ),
                        quick=decoders.is_quick,
                    )
                ]
            },
        )
    finally:
        upload_folder.remove()  # visitors' photos never outlive the app
