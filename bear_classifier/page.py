"""Every word a visitor, an API caller or a reader of the Space reads, in one place: the page, the refusals of the
request path (web/), the "Wrong?" flags, the API page and the Space's README. Two kinds of words live elsewhere: the
model card's prose (`training.card_writer.BODY`, with the data folders' own words), and the input gate's errors
(`model.images`, `model.decoding`), which the app, the batch command and the notebook's data check share.

The subject (what the photos show: "bear") is data, not code: training.ipynb's parameters `subject`, `title`,
`description`, `emoji` and `data_source` travel in the model card's front matter (`card.Subject`), and
everything here is written from them and from the model's classes. A class name is never followed by the subject's noun
("raccoon (97%)", never "raccoon bear"): the classes are whatever the student's folders are called.
"""

from __future__ import annotations

from bear_classifier.model.card import Subject, TrainingFacts


def a(noun: str) -> str:
    """The noun with its indefinite article: "a bear", "an apple"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def either(vocab: list[str], last: str = "or") -> str:
    """The classes as choices: "black, grizzly or teddy"."""
    return vocab[0] if len(vocab) == 1 else f"{', '.join(vocab[:-1])} {last} {vocab[-1]}"


# Refusals: what a caller reads when the server turns a request away (web/: limits, clients, uploads) --------------

BUSY = "The classifier is busy: please try again in a few seconds."
URL_PATH = "Send the photo as an uploaded file: web addresses are not fetched."
NOT_FOUND = "Not found."
QUEUED = (
    "You have photos waiting already: wait for their answers, then send the next. "
    "(Running this app yourself? BEAR_QUEUED_PER_CLIENT raises this limit.)"
)
OPEN_REQUESTS = (
    "Too many requests open at once from your address: close some tabs or wait, then try again. "
    "(Running this app yourself? BEAR_STREAMS_PER_CLIENT raises this limit.)"
)
SERVER_OPEN = "The server has too many requests open just now: please try again in a few seconds."
UNKNOWN_SESSION = "Unknown session: join the queue first (POST /gradio_api/queue/join)."
NO_UPLOAD = "No upload of yours is in flight under this upload_id."
UPLOAD_NOT_KEPT = "The server could not keep this upload just now: please send it again."
UPLOADS_FULL = "The server holds too many uploads just now: please try again in a few minutes."
MANY_AT_ONCE = "You are uploading several photos at once: wait until they are done, then try again."
DECODE_PAUSED = (
    "Your photos have used this server's decoding time for now (a photo over BEAR_DECODE_CPU_SECONDS, or more "
    "than BEAR_DECODE_CPU_SECONDS_PER_MINUTE a minute): please wait a minute, and send ordinary JPEG or PNG photos."
)
METHOD_NOT_ALLOWED = "Method not allowed."
LONG_UPLOAD_ID = "upload_id is too long."
NOT_JSON = "The request body is not valid JSON."
NO_SUCH_EVENT = "No such event."
ONE_IMAGE = "Upload one image per request."


def not_what_it_takes(path: str) -> str:
    return f"The request body is not what {path} takes."


def upload_too_slow(seconds: float) -> str:
    return f"An upload may take at most {seconds:g} s."


def too_large(cap_bytes: int) -> str:
    return f"Request body over {cap_bytes // 1024} KB."


def too_many_requests(setting: str) -> str:
    """The refusal when a client's share is used up; `setting` raises it."""
    return (
        "You have sent many requests in a short time: please wait a minute and try again. "
        f"(Running this app yourself? {setting} raises this limit.)"
    )


# The page --------------------------------------------------------------------------------------------------------


OUTPUT_LABELS = ("Probabilities", "Verdict", "Details")
"""The labels of the page's three outputs (the answer's shapes: `serving.Answer`)."""


def upload_label(subject: Subject) -> str:
    return f"Photo of {a(subject.subject)}"


def description(facts: TrainingFacts) -> str:
    subject = Subject.of(facts)
    return (
        f"{subject.description} Upload a photo of {a(subject.subject)}: the model answers "
        f"**{either(facts.vocab)}** and says how sure it is. Photos unlike its training photos are flagged."
    )


def unknown_headline(vocab: list[str]) -> str:
    """The headline for a photo the guard flagged: what the model cannot tell, never a class in large type."""
    return f"Not {a(' / '.join(vocab))}?"


def unknown_message(label: str, top: float, vocab: list[str]) -> str:
    return (
        f"**This does not look like any photo the model was trained on** (it knows only {either(vocab, 'and')}). "
        f"Its best guess, *{label}* ({top:.0%}), is not to be trusted."
    )


def unsure_headline(first: str, second: str) -> str:
    return f"{first} or {second}?"  # a close call must not look like an answer in large type either


def unsure_message(first: str, p_first: float, second: str, p_second: float) -> str:
    return (
        f"**Unsure:** *{first}* ({p_first:.0%}) or *{second}* ({p_second:.0%}); "
        "the model cannot tell them apart in this photo."
    )


def verdict(label: str, top: float) -> str:
    return f"**{label}** ({top:.0%})."


def refusal(error: object) -> str:
    return f"**Could not classify this upload.** {error}"


NONE_OF_THESE = "none of these"
"""The stored correction of "Wrong: none of these" (a photo of none of the classes)."""


def flag_options(vocab: list[str]) -> list[tuple[str, str]]:
    """Button text and stored value for each correction a user can give."""
    return [(f"Wrong: it is {a(label)}", label) for label in vocab] + [("Wrong: none of these", NONE_OF_THESE)]


FLAG_STORED = "**Thank you: stored for review.** People look at the photo before it is used to train the model."
FLAG_NOT_ANSWERED = "Only a photo this page just classified can be flagged: press Submit first."
FLAG_NO_CORRECTION = "Choose which answer is right."
FLAG_GONE = "This photo is no longer on the server: upload it again."
PHOTO_GONE = "Your photo was deleted from the server before its turn (uploads are kept briefly): upload it again."
FLAG_RATE = "At most {flags_per_hour} flags per hour (BEAR_FLAGS_PER_HOUR raises it)."
FLAG_CLIENT_FULL = "You have flagged many photos: thank you, that is enough for now."
FLAG_FOLDER_FULL = "The review folder is full: flags are paused until it is reviewed."
FLAG_NEARLY_FULL = (
    "The review folder is nearly full: the room left is kept for visitors who have not flagged yet. Thank you."
)


def flag_refused(reason: object) -> str:
    return f"**Not stored.** {reason}"


UPLOAD_DESCRIPTION = (
    "An image file uploaded to this server: gradio_client's handle_file() uploads a local file, or POST it to "
    "/gradio_api/upload and pass the path it returns. Local paths of the server and web addresses are refused."
)
UPLOAD_PATH_DESCRIPTION = "The path that POST /gradio_api/upload returned for the photo"
UPLOAD_URL_DESCRIPTION = "Not used: web addresses and data URLs are refused"
"""The "Use via API" page's words for the photo input (`components.UploadedImage`)."""


def how_it_was_made(facts: TrainingFacts) -> str:
    if facts.learning_rate is None:  # the zero-shot recipe: the card's recipe says "nothing trained"
        mapping = "; ".join(
            f"{label}: {', '.join(name.split(',')[0] for name in names)}"
            for label, names in facts.zero_shot_mapping.items()
        )
        return (
            f"A `{facts.arch}` network pretrained on ImageNet, used as it is: no weight was trained. Its own "
            f"ImageNet classes stand for ours ({mapping}), a mapping read from {facts.n_train} training photos."
        )
    recipe = facts.recipe or f"fine-tuned for {facts.epochs} epochs"
    return f"A `{facts.arch}` network pretrained on ImageNet, trained further with fastai ({recipe}) on {facts.n_train} photos."


def external_accuracy(facts: TrainingFacts) -> str:
    """The external photos' result, against the baselines that are not the model itself."""
    if facts.external_accuracy is None:
        return ""
    against = [f"{facts.external_baseline_accuracy:.1%} for the pixel baseline"]
    if facts.learning_rate is not None and facts.external_zero_shot_accuracy is not None:
        against.insert(0, f"{facts.external_zero_shot_accuracy:.1%} for the pretrained network read zero-shot")
    return (
        f" On {facts.n_external} photos of {either(facts.vocab, 'and')} from another source (never used to build "
        f"the model): {facts.external_accuracy:.1%}, against {' and '.join(against)}."
    )


def photos(n: int | None) -> str:
    return "the photos" if n is None else f"{n} photo{'' if n == 1 else 's'}"


def what_gets_flagged(facts: TrainingFacts) -> str:
    """What the guard was measured to flag: its own folders of photos that are none of the classes."""
    if not facts.not_bears_flagged:
        return (
            "Photos unlike the training photos are flagged as *not like the training data*; how often that works "
            "on photos of other things was not measured for this model."
        )
    measured = ", ".join(
        f"{share:.0%} of {photos(facts.n_not_bears.get(folder))} in `{folder}`"
        for folder, share in facts.not_bears_flagged.items()
    )
    return (
        f"Photos of other things are flagged as *not like the training data*: measured, the check flagged {measured}."
    )


def article(facts: TrainingFacts) -> str:
    """How the model was made and how good it is, read from the model card: true for any recipe and subject."""
    return f"""
### How it was made
{how_it_was_made(facts)} {facts.data_source}: {facts.n_train + facts.n_valid} photos in all
({", ".join(f"{n} {label}" for label, n in facts.counts.items())}), of which {facts.n_valid} were held out
for validation. It follows fast.ai's "Practical Deep Learning" lesson on production.

### How accurate it is
{facts.valid_accuracy:.1%} on the {facts.n_valid} held-out validation photos; a pixel-similarity baseline
gets {facts.baseline_accuracy:.1%}.{external_accuracy(facts)}

### What it cannot do
It knows only these {len(facts.vocab)} classes and always picks one, even for a photo of something else.
{what_gets_flagged(facts)} The check is not perfect, and photos unlike the training photos (night-time,
distant or blurred shots) may be misread. This is a demo, not a safety tool.

### Wrong answer?
Use the buttons below the result to tell us the right class. **A flagged photo is stored** (re-encoded,
without its EXIF data such as location) in a private review folder, where people look at it before it
is used to fine-tune the model. Photos you do not flag are deleted from the server after a while.
"""


# The Space's README (`spacetree`) ---------------------------------------------------------------------------------

SPACE_TAGS = ["fastai", "gradio", "image-classification", "computer-vision"]
SHORT_DESCRIPTION_MAX = 60  # the Hub refuses a longer short_description


def short_description(subject: Subject) -> str:
    """The description when it fits the Hub's 60 characters, else the title (cut at a word when it must be)."""
    for text in (subject.description, subject.title):
        if len(text) <= SHORT_DESCRIPTION_MAX:
            return text
    return subject.title[: SHORT_DESCRIPTION_MAX - 1].rsplit(" ", 1)[0] + "…"


def space_front_matter(subject: Subject) -> dict[str, object]:
    """The Space README's visitor-facing front matter: the rest (sdk, versions, hardware) is `spacetree`'s."""
    tag = "-".join(subject.subject.lower().split())
    return {
        "title": subject.title,
        "emoji": subject.emoji,
        "short_description": short_description(subject),
        "tags": SPACE_TAGS + ([tag] if tag and tag not in SPACE_TAGS else []),
    }


def space_body(subject: Subject, vocab: list[str]) -> str:
    """The Space README's text, below its front matter."""
    return f"""
# {subject.title}

{subject.description} Upload a photo of {a(subject.subject)} and this demo answers **{either(vocab)}**, with
the probability of each. It follows fast.ai's *Practical Deep Learning* lesson on production: an
ImageNet-pretrained network made into a fastai classifier in a notebook, exported as `model.pkl` and
served here with Gradio on the CPU.

**What it cannot do.** It knows only these {len(vocab)} classes. A photo unlike its training photos is
flagged "{unknown_headline(vocab)}" instead of named, but that check is not perfect. This is a demo,
not a safety tool. How accurate it is, on which photos, is in the model card (`model_card.md` here,
or the model repo this Space names).

**Wrong answer?** The buttons under the result store the photo (re-encoded, without EXIF data such
as location) with your correction in a private review folder that people look at before it is used
for training. Photos you do not flag are deleted after a while.

**From a program**:

```python
from gradio_client import Client, handle_file

client = Client("<this Space's id, e.g. your-name/{subject.slug}>")
probabilities, verdict, details = client.predict(handle_file("photo.jpg"), api_name="/predict")
```

`details` is `{{"label", "confidence", "out_of_domain", "ood_score", "error"}}`. Photos go up as uploads
only (JPEG, PNG, WebP, ...; at most 10 MB and 50 megapixels); web addresses are not fetched.

**Your own copy.** This Space holds the whole Python package that trained and serves the model: clone it
with git (`git clone https://huggingface.co/spaces/<owner>/<name>`) and open its `training.ipynb` with
`project_url` set to that address to train your own model on Colab, Kaggle or your machine.
"""
