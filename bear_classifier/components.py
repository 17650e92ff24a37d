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

    def __init__(self, **kwargs):
        super().__init__(type="filepath", image_mode=None, **kwargs)

    def preprocess(self, payload: FileData | None) -> str | None:
        if payload is None or payload.path is None:
            return super().preprocess(payload)  # nothing uploaded, or a base64 data URL
        return payload.path
