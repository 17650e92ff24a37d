"""Gradio components tuned for this app."""
from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData


class UploadedImage(gr.Image):
    """`gr.Image` that hands the uploaded file's path to our function without opening it.

    Stock `gr.Image` runs `PIL.Image.open` before our code: a non-image, a truncated file or a
    decompression bomb then fails inside Gradio with a generic error. Here every upload reaches
    `images.open_image`, which decodes safely and explains what is wrong.
    """

    is_template = True  # rendered by the frontend's ordinary Image component
    # No __init__ override: Gradio reads the component's props from gr.Image's signature.

    def preprocess(self, payload: FileData | None) -> str | None:
        if payload is None or payload.path is None:
            return super().preprocess(payload)  # nothing uploaded, or a base64 data URL
        return payload.path
