"""What app.py adds to the course's `Interface` to serve it in public: one call before gradio is imported
(`prepare`), the model behind the page (`Service`: decoders under budgets, answers remembered, "Wrong?" flags kept
for review) and the launch (`launch`: a bounded queue, the upload folder's lifetime and shares, the request limits).
Gradio (through `feedback`, `limits` and `components`) and torch (through `serving`) are imported only inside
functions: `prepare` must run before them, since some gradio modules read the upload folder when imported, and on
ZeroGPU `spaces` must come first (tests/test_cold_start.py checks the order)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from bear_classifier import page
from bear_classifier.settings import Settings
from bear_classifier.web import clients, machine, uploads, zerogpu

if TYPE_CHECKING:
    import gradio as gr

    from bear_classifier.model.images import ImageError
    from bear_classifier.model.predictor import Predictor


def prepare() -> Settings:
    """Every BEAR_* variable, read once; and what must happen before gradio is imported."""
    uploads.own_folder()  # some gradio modules read the upload folder when imported: a folder of the app's own
    # Gradio asks matplotlib for its backend at every request; resolving the default ("auto") imported pyplot into
    # the first visitor's request (1.5 s on a busy machine). This page draws nothing.
    os.environ.setdefault("MPLBACKEND", "agg")
    settings = Settings.from_env()
    zerogpu.prepare(settings)  # on ZeroGPU, `spaces` before gradio and torch, and the GPU function it requires
    return settings


class Service:
    """The model behind the page: each photo decoded in a worker under the client's budget, answered once per
    content, and remembered for that visitor's "Wrong?" flags."""

    def __init__(self, model: Predictor, settings: Settings):
        from bear_classifier import serving
        from bear_classifier.web import feedback

        host = machine.read()  # ZeroGPU documents neither its CPUs nor its memory: say what this one allows
        machine.tune_malloc()  # before Gradio's request threads: each would keep a heap of its own
        workers = settings.decode_workers or host.decoders(settings.decode_memory_mb)
        print(f"{host.describe()}; {workers} decoder workers", file=sys.stderr, flush=True)
        self.settings = settings
        self.quotas = clients.Quotas(settings.rates)  # each client address's share
        self.decoders = model.decoder_pool(workers, settings.budget, self.quotas)
        self.answers = serving.Answers(model, self.decoders, self.quotas)
        self.reviews = feedback.ReviewLog(
            settings.feedback_repo,
            max_bytes=settings.review_max_mb * 2**20,
            quotas=self.quotas,
            trust_forwarded=settings.on_space,
            review_copy=self.decoders.review_copy,
        )

    def classify(self, img: str | ImageError, request: gr.Request) -> tuple:
        """The page's outputs for one photo: probabilities, verdict, details."""
        answer = self.answers.answer(img, clients.of_request(request, self.settings.on_space))
        probabilities = answer.probabilities[1] if answer.probabilities else None  # None: the upload was refused
        self.reviews.remember(request, img, probabilities, answer.details)  # what a "Wrong?" flag may refer to
        return answer.as_outputs()

    def interface_options(self, categories: list[str]) -> dict:
        """The `Interface` arguments that serve in public: requests at once, "Wrong?" flags kept for review."""
        return {
            # Off, explicitly: on a Space Gradio would cache them (GRADIO_CACHE_EXAMPLES), and a cached example never
            # reaches classify_image, so its "Wrong?" flag would be refused; caching would also run every example at
            # each wake-up. An example clicked here costs one prediction once, then it is answered from memory.
            "cache_examples": False,
            "concurrency_limit": self.settings.requests_at_once,  # they share forward passes
            "flagging_mode": "manual",
            "flagging_options": page.flag_options(categories),
            "flagging_dir": str(self.settings.review_dir),
            "flagging_callback": self.reviews,
        }


def launch(demo: gr.Blocks, service: Service) -> None:
    """Serve `demo` until stopped, with a bounded queue, the upload folder's lifetime and shares, and the request
    limits in front of Gradio's routes."""
    from gradio.utils import get_upload_folder

    from bear_classifier.web import limits
    from bear_classifier.web.components import PAGE_CSS

    settings = service.settings
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
                        service.quotas,
                        upload_folder,
                        trust_forwarded=settings.on_space,
                        at_once=limits.AtOnce(
                            settings.streams_per_client,
                            settings.streams_total,
                            settings.queued_per_client,
                            settings.requests_for_new_clients,
                        ),
                        quick=service.decoders.is_quick,
                    )
                ]
            },
        )
    finally:
        upload_folder.remove()  # visitors' photos never outlive the app
