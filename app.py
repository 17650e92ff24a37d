"""fast.ai lesson 2's image classifier (the bear classifier, or your own: README, "Make it yours") as a Gradio app.
Settings: README; every word the page shows: bear_classifier/page.py; what serving in public adds: launch.py."""

from bear_classifier import launch

settings = launch.prepare()  # production: before gradio is imported (its upload folder, ZeroGPU's `spaces`)

# isort: split
import gradio as gr

from bear_classifier import page, serving
from bear_classifier.web.components import Interface, Probabilities, UploadedImage

model, card = serving.load(settings)  # model.pkl, checked against its card (load_learner, or its cached graphs)
categories = model.vocab
service = launch.Service(model, settings)  # production: decoders under budgets, answers kept, flags for review


def classify_image(img: str | serving.ImageError, request: gr.Request) -> tuple:
    return service.classify(img, request)  # probabilities, verdict, details


subject = page.Subject.of(card)
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
    **service.interface_options(categories),  # production: requests at once, "Wrong?" flags kept for review
)

if __name__ == "__main__":
    launch.launch(demo, service)  # production: a bounded queue, the upload folder's lifetime, request limits
