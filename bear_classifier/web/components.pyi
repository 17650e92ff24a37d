"""Gradio components tuned for this app."""

from __future__ import annotations

import copy
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder

from bear_classifier import page
from bear_classifier.model.images import ImageError, uploaded_file
from bear_classifier.settings import EXAMPLES_DIR
from bear_classifier.web.feedback import FlagRefused

class UploadedImage(gr.Image):
    """`gr.Image` that hands our function the path of a file uploaded to this server, or the `ImageError`
    to answer with, and never opens the file itself.

    Stock `gr.Image` decodes data URLs and any path a caller names (a FileData without "meta" skips
    Gradio's "was it uploaded?" check) before our code runs, and a raise here would fail the request.
    Every photo reaches `images.open_image`, which decodes safely and explains what is wrong.
    """

    is_template = True  # rendered by the frontend's ordinary Image component
    # No __init__ override: Gradio reads the component's props from gr.Image's signature.
    def api_info_as_input(self) -> dict[str, Any]:
        """The "Use via API" page's words for the photo: stock `gr.Image` promises "a local filepath or
        publicly available URL", both of which `preprocess` refuses."""
        info = copy.deepcopy(super().api_info_as_input())
        info["additional_description"] = page.UPLOAD_DESCRIPTION
        info["properties"]["path"]["description"] = page.UPLOAD_PATH_DESCRIPTION
        info["properties"]["url"]["description"] = page.UPLOAD_URL_DESCRIPTION
        return info

    def example_payload(self) -> dict[str, Any]:
        """The API page's example: a local file that gradio_client uploads (stock `gr.Image` shows a web address).
        The page writes `handle_file('<url>')` for a FileData with a "url", so the file name goes there too."""
        name = min((p.name for p in EXAMPLES_DIR.glob("*.jpg")), default="photo.jpg")  # the first example shown
        return {"path": name, "url": name, "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def preprocess(self, payload: FileData | None) -> str | ImageError:
        try:
            return uploaded_file(payload.path if payload else None, get_upload_folder())
        except ImageError as refusal:
            return refusal
    from collections.abc import Callable, Sequence
    from typing import TYPE_CHECKING, Any, Literal

    from gradio.blocks import Block

    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component

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
    from collections.abc import Callable, Sequence
    from typing import TYPE_CHECKING, Any, Literal

    from gradio.blocks import Block

    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component

WRONG_ANSWER = "wrong-answer"
"""The class of the "Wrong: …" buttons, for `PAGE_CSS`."""

PAGE_CSS = f"""
/* Gradio 6.31 ships a Source Sans Pro SemiBold file with only a few glyphs, so bold text fell back to
   DejaVu Sans Bold, which is set larger. Its complete Bold file serves every heavy weight instead. */
@font-face {{
    font-family: 'Source Sans Pro';
    src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2');
    font-weight: 600 700;
    font-style: normal;
}}
/* A correction needs an answer to correct: no "Wrong: …" buttons until the probabilities are shown
   (again none after Clear, which empties them). */
.gradio-container:not(:has([data-testid='label-output-value'])) .{WRONG_ANSWER} {{
    display: none;
}}
"""
"""`launch(css=...)`: the page's look beyond Gradio's theme."""

class Interface(gr.Interface):
    """`gr.Interface` whose flag buttons carry the `WRONG_ANSWER` class, so that `PAGE_CSS` can hide them, and
    whose page says in words what a flag did: stored for review, or refused and why. (Gradio's own buttons show
    "Saving..." and then their label again, whatever happened, and print a refusal's reason on the server.)"""

    def render_flag_btns(self) -> list[gr.Button]:
        buttons = [gr.Button(label, elem_classes=[WRONG_ANSWER]) for label, _ in self.flagging_options]
        self.flag_note = gr.Markdown(elem_classes=[WRONG_ANSWER])  # below the buttons, hidden with them
        return buttons

    def attach_flagging_events(self, flag_btns: list[gr.Button] | None, _clear_btn: Any, _submit_event: Any) -> None:
        if not flag_btns:
            return
        flagged = self.input_components + self.output_components
        for button, (_, value) in zip(flag_btns, self.flagging_options, strict=True):
            note = FlagNote(self.flagging_callback, value)
            button.click(note, flagged, self.flag_note, preprocess=False, queue=False, api_visibility="undocumented")
        for event in (_clear_btn.click, _submit_event.then):  # a new answer, or none: the last flag's note goes
            event(lambda: "", None, self.flag_note, queue=False, api_visibility="undocumented")

class FlagNote:
    """A "Wrong: …" button's event: flags with `value` and returns what the page says about it."""

    def __init__(self, callback: gr.FlaggingCallback, value: str):
        self.callback, self.value = callback, value
        self.__name__ = "Flag"  # Gradio names an event after its function

    def __call__(self, request: gr.Request, *flag_data: Any) -> str:
        try:
            self.callback.flag(list(flag_data), flag_option=self.value, username=request.username)
        except FlagRefused as refusal:
            return page.flag_refused(refusal)
        return page.FLAG_STORED
