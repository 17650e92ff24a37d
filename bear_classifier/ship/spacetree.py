"""The files a Space runs, for the hardware it runs on and the model it serves.

Two hardware targets (hub-docs spaces-overview and spaces-zerogpu, checked 2026-12; README "Deploy your own Space"):
- `zero-a10g` (ZeroGPU): the one Gradio hardware a free personal account may host (up to 2 Spaces). Gradio SDK
  only, some Python minors only (3.10 and 3.12 at the last check), torch from PyPI (its CUDA build), and the
  app must import `spaces` and decorate at least one function with `@spaces.GPU` (app.py does there, through
  `zerogpu.prepare`; inference stays on the CPU, so visitors spend no GPU quota and wait for no GPU).
- `cpu-basic`: PRO accounts and paid organisations. Any Python minor; CPU-only torch from PyPI's sister index.

The Space follows its model: the library versions and Python minor come from the model's card (the environment
that exported it, e.g. Colab's), so the app's start-up check accepts the model instead of refusing it after a
full build. A combination that cannot serve is refused here, before anything is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import SpaceCard

from bear_classifier import page
from bear_classifier.model import card
from bear_classifier.model.modelfile import minor
from bear_classifier.model.predictor import INT8_GLOB
from bear_classifier.settings import ROOT

SPACE_DIR = ROOT / "space"
"""The Space's own README: its front matter's settings; its words (title, emoji, description, tags, text) are
`page`'s, for the model's subject. The developer README never goes up."""
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ("torch", "torchvision")
# The Hub refuses a Space README that breaks these: https://huggingface.co/docs/hub/spaces-config-reference
SHORT_DESCRIPTION_MAX = 60
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
# The card's `versions` that are pinned in requirements.txt (the rest of the card's versions, e.g. python, are not).
CARD_PINS = ("fastai", "fastcore", "fasttransform", "plum-dispatch", "torch", "torchvision", "timm", "pillow")


class SpaceTreeError(ValueError):
    """The Space cannot be built as asked; the message says what to change."""


ZERO_GPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
"""The torch releases ZeroGPU accepts: hub-docs docs/hub/spaces-zerogpu.md, "Supported versions" (the list since
hub-docs #2474, 2026-05-13), read 2026-12 from the newest stored hub-docs (2026-08); HF's Spaces skill says the same
(huggingface/skills#208). Re-read it when a ZeroGPU build log names torch."""
TORCHVISION_FOR = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}
"""The torchvision release built against each listed torch (PyTorch's compatibility table)."""
PLATFORM_PACKAGES = {
    "gradio": "installed by the platform from the README's sdk_version",
    "gradio_client": "gradio's own dependency, installed with it",
    "huggingface_hub": "preinstalled on every Space",
    "spaces": "preinstalled on ZeroGPU, where a conflicting pin fails the build, huggingface/skills#138; "
    "imported nowhere else",
}
"""Left out of the Space's requirements.txt: a pin of what the platform installs itself can only fight it."""
BATCH_ONLY = ("tqdm", "pyarrow")
"""Used by `python -m bear_classifier.batch.classify` only (a progress bar, Parquet), never by the Space."""


@dataclass(frozen=True)
class Hardware:
    flavor: str  # the Hub's name (huggingface_hub.SpaceHardware)
    pythons: tuple[str, ...]  # Python minors the hardware runs, preferred first
    min_torch: tuple[int, int]  # oldest torch it supports
    cpu_torch: bool  # CPU-only torch wheels (PyTorch's CPU index) instead of PyPI's CUDA build
    summary: str
    torch_list: tuple[str, ...] = ()  # the only torch releases it accepts; empty: the model card's own


ZERO_GPU = Hardware(
    "zero-a10g",
    ("3.12", "3.10"),
    (2, 8),
    False,
    "ZeroGPU: the hardware a free account may host (up to 2 Spaces); needs a @spaces.GPU function, Python 3.10/3.12",
    ZERO_GPU_TORCH,
)
CPU_BASIC = Hardware(
    "cpu-basic",
    ("3.11", "3.12", "3.13", "3.10"),
    (2, 0),
    True,
    "CPU basic (2 vCPU, 16 GB): needs PRO or a paid organisation since July 2026",
)
HARDWARE = {hw.flavor: hw for hw in (ZERO_GPU, CPU_BASIC)}
# torch publishes wheels for a Python minor from these releases on (older torch has none to install).
TORCH_FOR_PYTHON = {"3.10": (1, 11), "3.11": (1, 13), "3.12": (2, 2), "3.13": (2, 5)}


def _release(version: str) -> tuple[int, int]:
    major, minor_, *_ = (int(part) for part in re.findall(r"\d+", str(version))[:2] + ["0"])
    return major, minor_


def public_version(version: str) -> str:
    """`2.8.0+cu126` (Colab's torch) -> `2.8.0`: the local part names a build index, not a release on PyPI."""
    return str(version).split("+")[0]


def python_for(hardware: Hardware, model_python: str, portable: bool) -> str:
    """The Python minor the Space runs: the model's own where the hardware has it; else (a portable model.pkl
    loads on any minor) the hardware's preferred one. A model.pkl carrying bytecode is refused on another minor."""
    wanted = minor(model_python)
    if wanted in hardware.pythons:
        return wanted
    if portable:
        return hardware.pythons[0]
    raise SpaceTreeError(
        f"model.pkl was exported under Python {wanted} and carries Python bytecode, so it only loads on Python "
        f"{wanted}, which {hardware.flavor} does not run ({', '.join(hardware.pythons)}). Re-export it portably "
        f"under Python {wanted} (`python -c \"from bear_classifier import export; export.reexport('model.pkl')\"`, "
        f"then push it again), or deploy with --hardware cpu-basic (PRO)."
    )


def pins(requirements: str, versions: dict[str, str]) -> dict[str, str]:
    """{package: version} of requirements.txt, with the model card's versions where it records them."""
    found = {m[1].lower(): m[2] for m in re.finditer(r"^([\w.-]+)==([^\s#;]+)", requirements, re.MULTILINE)}
    for name in CARD_PINS:
        if name in versions and name in found:
            found[name] = public_version(versions[name])
    return found


def listed_torch(hardware: Hardware, pinned: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """(`pinned` with a torch `hardware` accepts, a note when that is not the card's own). On a hardware with a
    list: the card's torch when listed, else the oldest listed release at or above it (torch reads older
    models), else, for a card newer than the list, the newest listed; `deploy --check` then proves the model
    under it against learn.predict. Older than the whole list is refused by `check_combination`."""
    torch = pinned.get("torch")
    if not hardware.torch_list or torch is None or torch in hardware.torch_list:
        return pinned, None
    if _release(torch) < _release(hardware.torch_list[0]):
        return pinned, None
    newer = [v for v in hardware.torch_list if _version(v) >= _version(torch)]
    chosen = newer[0] if newer else hardware.torch_list[-1]
    why = "newer than" if not newer else "not on"
    note = (
        f"The model card says torch {torch}, {why} the list {hardware.flavor} accepts ({', '.join(hardware.torch_list)}; "
        f"hub-docs spaces-zerogpu): the Space pins torch {chosen} with torchvision {TORCHVISION_FOR[chosen]} instead. "
        "`deploy --check` proves it: every example answered under it as learn.predict answers it."
    )
    return {**pinned, "torch": chosen, "torchvision": TORCHVISION_FOR[chosen]}, note


def installed_versions(versions: dict[str, str], hardware: Hardware | None) -> tuple[dict[str, str], str | None]:
    """The card's `versions` as a Space on `hardware` installs them (`listed_torch`), and the note when torch
    differs: what the app's start-up check must expect there. `hardware` None: not a Space, the card's own."""
    if hardware is None:
        return dict(versions), None
    chosen, note = listed_torch(hardware, {k: public_version(v) for k, v in versions.items() if k in TORCH_PACKAGES})
    return {**versions, **chosen} if note else dict(versions), note


def torch_note(hardware: Hardware, versions: dict[str, str], root: Path = ROOT) -> str | None:
    """What `listed_torch` says about the tree `files` builds for these card versions (None: the card's torch)."""
    return listed_torch(hardware, _card_pins(versions, root))[1]


def _card_pins(versions: dict[str, str], root: Path) -> dict[str, str]:
    return pins((Path(root) / "requirements.txt").read_text(encoding="utf-8"), versions)


def _version(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", public_version(version))[:3])


def check_combination(hardware: Hardware, python: str, pinned: dict[str, str]) -> None:
    """Refuse what cannot install or serve, before anything is sent."""
    torch = pinned.get("torch")
    if torch is None:
        raise SpaceTreeError(
            "requirements.txt must pin torch as `torch==version` (the version that exported the model)"
        )
    if _release(torch) < hardware.min_torch:
        accepted = ", ".join(hardware.torch_list) or f"{'.'.join(map(str, hardware.min_torch))} or newer"
        raise SpaceTreeError(
            f"{hardware.flavor} accepts torch {accepted}; the model was exported with torch {torch}. Retrain or "
            "re-export it under a newer torch, then push it again."
        )
    if _release(torch) < TORCH_FOR_PYTHON.get(python, (0, 0)):
        raise SpaceTreeError(
            f"torch {torch} has no wheels for Python {python}, the Python {hardware.flavor} would run. "
            f"Re-export the model under a newer torch (pushing it again), or choose the other --hardware."
        )


def requirements(text: str, hardware: Hardware, pinned: dict[str, str]) -> str:
    """The Space's requirements.txt: `text` (the repository's serving requirements) with the model's versions, and
    torch as the hardware needs it (`+cpu` builds from PyTorch's CPU index on cpu-basic, PyPI's on ZeroGPU); without
    what the platform installs itself (`PLATFORM_PACKAGES`) and what only the batch command uses (`BATCH_ONLY`)."""
    lines = [f"# Written by bear_classifier.ship.deploy for a {hardware.flavor} Space: the model card's versions."]
    lines += [f"# Not listed: {name} ({why})." for name, why in PLATFORM_PACKAGES.items()]
    if hardware.cpu_torch:
        lines += ["# CPU-only torch/torchvision: PyPI's Linux torch pulls ~4 GB of CUDA a CPU Space never uses.",
                  f"--extra-index-url {CPU_INDEX}"]  # fmt: skip
    for line in _serving_lines(text):
        match = re.match(r"^([\w.-]+)==([^\s#;]+)(.*)$", line.strip())
        if not match:
            lines.append(line)
            continue
        name, comment = match[1], match[3]
        version = pinned.get(name.lower(), match[2])
        local = "+cpu" if hardware.cpu_torch and name in TORCH_PACKAGES else ""
        lines.append(f"{name}=={version}{local}{comment}")
    return "\n".join(lines) + "\n"


def _serving_lines(text: str) -> list[str]:
    """`text`'s lines without the packages the Space must not list, and without the comments just above them."""
    kept: list[str] = []
    comments: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comments.append(line)
            continue
        name = re.match(r"^([\w.-]*)", line.strip())[1].lower().replace("-", "_")
        if name not in PLATFORM_PACKAGES and name not in BATCH_ONLY:
            kept += comments + [line]
        comments = []
    return kept + comments


def preinstalled(hardware: Hardware, sdk_version: str, root: Path = ROOT) -> list[str]:
    """What the platform installs beside the Space's requirements.txt, as pip arguments (the versions tested here:
    the README's gradio, this repository's huggingface_hub and, on ZeroGPU, spaces): what `deploy --check` adds."""
    pinned = pins((Path(root) / "requirements.txt").read_text(encoding="utf-8"), {})
    wanted = ["huggingface_hub"] + (["spaces"] if hardware.torch_list else [])
    return [f"gradio=={sdk_version}"] + [f"{name}=={pinned[name]}" for name in wanted if name in pinned]


def check_front_matter(card: SpaceCard) -> None:
    """Fail before sending anything where the Hub would refuse the commit."""
    data = card.data
    if data.sdk != "gradio" or not data.app_file:
        raise SpaceTreeError("the Space README's front matter must say `sdk: gradio` and `app_file: app.py`")
    short = data.get("short_description")
    if short is not None and len(str(short)) > SHORT_DESCRIPTION_MAX:
        raise SpaceTreeError(
            f"the Space README's short_description is {len(str(short))} characters; the Hub refuses more than "
            f"{SHORT_DESCRIPTION_MAX}: shorten it"
        )
    for key in ("colorFrom", "colorTo"):
        if data.get(key) is not None and data.get(key) not in SPACE_COLORS:
            raise SpaceTreeError(
                f"the Space README's {key} is {data.get(key)!r}; the Hub accepts only {', '.join(SPACE_COLORS)}"
            )


def readme(
    text: str,
    hardware: Hardware,
    python: str,
    model_repo: str | None,
    revision: str | None,
    subject: card.Subject,
    vocab: tuple[str, ...],
    preload: bool = True,
) -> str:
    """The Space's README.md: `space/README.md` with `page`'s words for the model's `subject` and classes (`vocab`),
    the hardware it fits (`suggested_hardware`: shown to whoever duplicates it; the duplicate still starts on CPU
    basic), its Python minor and, with a model repo, `models:` and `preload_from_hub:` (the Space fetches model.pkl
    and its card at the pinned commit while it is built, so start-up needs no download). Not for a private repo
    (`preload=False`): Spaces cannot preload those ("not supported yet", spaces-config-reference), so the app
    downloads it at start with the HF_TOKEN secret, at the same pinned commit and SHA-256."""
    card = SpaceCard(text)
    for key, value in page.space_front_matter(subject).items():
        card.data[key] = value
    card.text = page.space_body(subject, list(vocab))
    check_front_matter(card)
    card.data.python_version = python
    card.data.suggested_hardware = hardware.flavor
    if model_repo:
        card.data.models = [model_repo, *(m for m in (card.data.models or []) if m != model_repo)]
        if preload:
            card.data.preload_from_hub = [f"{model_repo} model.pkl,README.md {revision}"]
    return str(card)


def files(
    hardware: Hardware,
    versions: dict[str, str],
    *,
    portable: bool,
    model: tuple[bytes, bytes] | None,
    model_repo: str | None = None,
    revision: str | None = None,
    preload: bool = True,
    root: Path = ROOT,
    subject: card.Subject,
    vocab: tuple[str, ...],
) -> dict[str, bytes]:
    """{path in the Space: content}: exactly what the Space runs (no venv, runs, reviews, tests, benchmarks,
    notebooks, caches, type stubs or the developer README). `versions`, `subject` and `vocab`: the model card's;
    `model`: (model.pkl, model_card.md) to upload, None when the Space fetches them from `model_repo`; `preload`: at
    build time (`preload_from_hub`), else (a private repo) at start-up."""
    root = Path(root)
    tree: dict[str, bytes] = {}
    for pattern in ("app.py", ".gitattributes", "bear_classifier/**/*.py", "examples/*"):
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                tree[path.relative_to(root).as_posix()] = path.read_bytes()
    for name in ("app.py", ".gitattributes", "requirements.txt", "space/README.md"):
        if not (root / name).is_file():
            raise SpaceTreeError(f"{root / name} is missing: run the deploy command from a checkout of the project")
    if model:
        tree["model.pkl"], tree["model_card.md"] = model
        for path in sorted((root / "served").glob("*")):  # `servedfiles`: made for this model.pkl by deploy
            tree[f"served/{path.name}"] = path.read_bytes()
        for path in sorted(root.glob(INT8_GLOB)):  # the int8 graphs the card names (`promote` copies only those)
            tree[path.name] = path.read_bytes()
    python = python_for(hardware, versions.get("python", "3.11"), portable)
    pinned, _ = listed_torch(hardware, _card_pins(versions, root))
    check_combination(hardware, python, pinned)
    text = (root / "space" / "README.md").read_text(encoding="utf-8")
    tree["README.md"] = readme(text, hardware, python, model_repo, revision, subject, vocab, preload).encode()
    tree["requirements.txt"] = requirements(
        (root / "requirements.txt").read_text(encoding="utf-8"), hardware, pinned
    ).encode()
    return tree
