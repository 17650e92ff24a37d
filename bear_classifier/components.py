"""Gradio components tuned for this app."""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from .images import ImageError, uploaded_file


class UploadedImage(gr.Image):
    """`gr.Image` that hands our function the path of a file uploaded to this server, or the `ImageError`
    to answer with, and never opens the file itself.

    Stock `gr.Image` decodes data URLs and any path a caller names (a FileData without "meta" skips
    Gradio's "was it uploaded?" check) before our code runs, and a raise here would fail the request.
    Every photo reaches `images.open_image`, which decodes safely and explains what is wrong.
    """

    is_template = True  # rendered by the frontend's ordinary Image component
    # No __init__ override: Gradio reads the component's props from gr.Image's signature.

    def preprocess(self, payload: FileData | None) -> str | ImageError:
        try:
            return uploaded_file(payload.path if payload else None, get_upload_folder())
        except ImageError as refusal:
            return refusal


class Probabilities(gr.Label):
    """`gr.Label` whose headline is given, not always the top class: for a photo the model does not
    know (a cat), the page must not announce "teddy" in large type. Takes `(headline, {class: p})`."""

    is_template = True

    def postprocess(self, value: tuple[str, dict[str, float]] | None) -> dict | None:
        if value is None:
            return super().postprocess(value)
        headline, probabilities = value
        data = super().postprocess(probabilities)
        data.label = headline
        return data
