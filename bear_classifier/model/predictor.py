"""Fast single-image (and batched) inference on an exported learner.

`learn.predict(img)` builds a DataLoader, runs the callback machinery and pushes fastai's tensor
subclasses through every layer. We apply the learner's own validation transforms (`transforms.Transforms`:
the same pixels, and therefore the same probabilities) and call the network directly.
"""

from __future__ import annotations

import dataclasses
import io
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from bear_classifier import files
from bear_classifier.model.decoding import Budget, Decoded, DecoderPool, Shares
from bear_classifier.model.guard import Guard
from bear_classifier.model.images import ImageError, ImageInput, open_image
from bear_classifier.model.served import Served

if TYPE_CHECKING:
    from fastai.learner import Learner

    from bear_classifier.settings import Backend

# Running the exported network: our class probabilities and (with the guard) the pretrained ImageNet
# classifier's, from one forward pass. Two interchangeable backends: PyTorch runs fastai's model as it is;
# ONNX Runtime runs the same weights, exported once at start-up (about a second), about 3x faster on a
# CPU with the same probabilities (BENCHMARKS.md), so it is the default where installed. The guard's
# ImageNet classifier (stored in model.pkl by `imagenet.attach_ood`: the one the learner's head carries, else
# the pretrained one) reads the body's average-pooled features. The guard is fitted on this same network's
# readings of the training photos, so a fine-tuned body is no harm; when the guard works at another input size
# than our head, the Predictor runs the network a second time at that size (`Predictor.__init__`).
ImageNetHead = tuple[torch.Tensor, torch.Tensor]


class TorchNetwork(nn.Module):
    """fastai's `Sequential(body, head)`, returning (probabilities,), or (probabilities, ImageNet
    probabilities) when given the pretrained ImageNet classifier."""

    def __init__(self, model: nn.Module, imagenet: ImageNetHead | None = None):
        super().__init__()
        self.body, self.head = model[0], model[1]
        self.imagenet = None
        if imagenet is not None:
            weight, bias = imagenet
            self.imagenet = nn.Linear(weight.shape[1], weight.shape[0])
            self.imagenet.weight.data, self.imagenet.bias.data = weight.float().clone(), bias.float().clone()
        self.eval()

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.body(batch)
        probabilities = torch.softmax(self.head(maps), dim=1)  # fastai's activation for CrossEntropyLossFlat
        if self.imagenet is None:
            return (probabilities,)
        return probabilities, torch.softmax(self.imagenet(maps.mean((2, 3))), dim=1)


def onnx_graph(model: nn.Module, size: int, imagenet: ImageNetHead | None = None, cache: Path | None = None) -> bytes:
    """`TorchNetwork(model, imagenet)` exported to ONNX for `size` x `size` inputs (any batch size). `cache`: a file
    where the graph is kept (`Predictor`'s `onnx_cache` names it by the model's SHA-256); read instead of exporting
    when it exists."""
    if cache is not None and cache.is_file():
        return cache.read_bytes()
    graph = io.BytesIO()
    outputs = ["probabilities"] + (["imagenet"] if imagenet is not None else [])

    def export() -> None:
        torch.onnx.export(
            TorchNetwork(model, imagenet),
            (torch.zeros(1, 3, size, size),),
            graph,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["images", *outputs]},
            dynamo=False,  # the TorchScript exporter: needs only `onnx`, handles this CNN
        )

    # On a fresh thread: on ZeroGPU, `spaces` enters torch dispatch modes on the main thread (they are
    # per-thread), and tracing under them writes a graph without inputs (`deploy --check` caught it).
    with ThreadPoolExecutor(1) as exporter:
        exporter.submit(export).result()
    if cache is not None:
        keep(cache, graph.getvalue())
    return graph.getvalue()


def keep(cache: Path, graph: bytes) -> None:
    """Write `graph` to `cache` atomically (another process never reads half a graph); a read-only cache only costs
    the next start the export."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with files.replacing(cache) as partial:
            partial.write_bytes(graph)
    except OSError:
        pass


INT8_GLOB = "model-int8-*.onnx"


@dataclass(frozen=True)
class Int8Graphs:
    """int8 graphs to run instead of a learner's fp32 ones (`quantize`)."""

    folder: Path
    """Holds each pass's graph under `int8_name`, checked by the caller against the model card."""
    threshold: float
    """The guard's threshold on their scores: its quantile of the training photos' scores under these graphs."""


def int8_name(size: int, guard: bool) -> str:
    """The file name of a pass's int8 graph (`quantize`), beside model.pkl; the model card lists them with their
    SHA-256s when they serve."""
    return f"model-int8-{size}px-{'guard' if guard else 'plain'}.onnx"


class OnnxNetwork:
    """The same network as an ONNX graph (`onnx_graph`), run by ONNX Runtime."""

    def __init__(self, graph: bytes, spin: bool = True):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # After a run, the pool's threads spin for a while waiting for the next one: a little faster for
        # one session, but with two (the guard's pass) each took the cores from the other, 3x slower.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.enable_cpu_mem_arena = False  # batches of 16 at 320 px would keep a peak-sized arena per session
        self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"images": np.ascontiguousarray(batch.numpy())})
        return tuple(torch.from_numpy(output) for output in outputs)


def network(
    model: nn.Module,
    size: int,
    backend: Backend | None = None,
    imagenet: ImageNetHead | None = None,
    spin: bool = True,
    cache: Path | None = None,
) -> TorchNetwork | OnnxNetwork:
    """`backend` "onnx" or "torch" (settings.backend); by default ONNX Runtime when it and `onnx`
    are installed. `spin`: False when two networks take turns (ONNX Runtime only). `cache`: the ONNX
    graph's file (ONNX Runtime only)."""
    backend = backend or ("onnx" if _has_onnxruntime() else "torch")
    if backend == "onnx":
        return OnnxNetwork(onnx_graph(model, size, imagenet, cache), spin)
    return TorchNetwork(model, imagenet)


def _has_onnxruntime() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Prediction:
    label: str
    """The most probable of the model's classes (it always picks one: read `out_of_domain` too)."""
    probabilities: dict[str, float]
    """Every class, in `vocab` order; they sum to 1."""
    out_of_domain: bool
    """The photo looks like none of the training photos: `label` means nothing then."""
    ood_score: float
    """The pretrained network's ImageNet probability mass outside the classes that the training
    photos carry (`guard.Guard`); out of domain above the threshold stored in model.pkl."""


class Predictor:
    """An exported learner (see `export`), or what `served` keeps of one, behind one inference thread, for
    thread-safe, low-overhead prediction.

    A request makes one hop: its photos go to the inference thread, which transforms and classifies them
    together with whatever other callers sent meanwhile (one forward pass for up to `max_batch_size` photos).
    The app decodes photos beforehand in worker processes (`decoder_pool`, `decoding.Decoded`), so a slow
    file never holds the thread; other callers' files (paths, bytes) are decoded here. One thread, because
    fastai's Pipelines (`transforms.Transforms` for a learner without the standard transforms) keep per-call
    state (not thread-safe), two cores gain nothing from parallel forward passes, and glibc gives every
    thread that allocates activations its own memory arena (BENCHMARKS.md, memory).
    """

    def __init__(
        self,
        learn: Learner | Served,
        draft: bool = False,
        backend: Backend | None = None,
        max_batch_size: int = 16,
        onnx_cache: Path | None = None,
        int8: Int8Graphs | None = None,
    ):
        """`learn`: an exported learner, or the record (`served.Served`) that `served` returned for it: then the
        ONNX graphs kept under `onnx_cache` run, with ONNX Runtime, and fastai is never imported.
        `onnx_cache`: a path prefix unique to this model.pkl (e.g. `<cache>/onnx/<its SHA-256>`) under
        which the ONNX graphs are kept between starts (`onnx_graph`). `int8`: the passes' int8 graphs and the guard's
        threshold on them: they run instead of the learner's fp32 graphs."""
        self.graphs: list[str] = []
        """The ONNX graphs' file names beside `onnx_cache`: the answer's, then the guard's second pass's, if any."""
        if isinstance(learn, Served):
            if onnx_cache is None:
                raise ValueError("a served record needs the onnx_cache its graphs are kept under")
            self.learn = self.model = None
            self.transforms = self.plain = learn.plain
            self.vocab: list[str] = list(learn.vocab)
            self.guard = learn.guard  # its ImageNet classifier is inside the guard's graph

            names = iter(learn.graphs)  # in the order they were made (below): the record's, whichever torch made them

            def make(size: int, guard: bool, spin: bool) -> TorchNetwork | OnnxNetwork:
                self.graphs.append(name := next(names))
                return OnnxNetwork(onnx_cache.with_name(name).read_bytes(), spin)
        else:
            from bear_classifier.model.transforms import Transforms  # fastai's Pipelines: only a learner needs them

            self.learn = learn
            self.model = learn.model.eval().cpu()
            self.transforms = Transforms.of(learn)
            self.plain = self.transforms.plain
            self.vocab = list(learn.dls.vocab)
            # The out-of-domain guard, written by imagenet.attach_ood: the learner's ImageNet classifier, folded
            # into the network as a second output, the ImageNet classes that count as in domain, and the input
            # size it was calibrated at (the learner's own by default: then one forward pass gives both).
            self.guard = Guard.from_state(getattr(learn, "ood_state", None))
            if self.guard is not None and int8 is not None:
                self.guard.threshold = int8.threshold

            def make(size: int, guard: bool, spin: bool) -> TorchNetwork | OnnxNetwork:
                imagenet = (self.guard.imagenet_weight, self.guard.imagenet_bias) if guard else None
                precision = "fp32" if int8 is None else "int8"
                cache = self._graph(onnx_cache, size, guard, precision) if onnx_cache is not None else None
                if int8 is None:
                    return network(self.model, size, backend, imagenet, spin, cache)
                graph = (int8.folder / int8_name(size, guard)).read_bytes()
                if cache is not None:
                    keep(cache, graph)  # the served record names it like an exported graph
                return OnnxNetwork(graph, spin)

        size = self.transforms.size
        guard_size = (self.guard.size or size) if self.guard else size
        self._guard_network = self._guard_transform = None
        if guard_size == size:
            self.network = make(size, self.guard is not None, True)
        else:
            self._guard_transform = self.transforms.at(guard_size)  # first: it refuses a non-standard learner
            self.network = make(size, False, False)
            self._guard_network = make(guard_size, True, False)
        # Decoding a JPEG at reduced size is far cheaper for phone photos, but changes pixels
        # slightly compared with learn.predict; off unless asked for (BENCHMARKS.md measures it).
        self.draft_size = 2 * size if draft else None
        self.max_batch_size = max_batch_size
        self._waiting: queue.SimpleQueue[tuple[ImageInput | Decoded | None, Future]] = queue.SimpleQueue()
        # Started by the first prediction: a Predictor built only for its guard or its network (evaluation,
        # tests, bench) leaves no thread behind.
        self._serving: threading.Thread | None = None
        self._starting = threading.Lock()

    def _graph(self, onnx_cache: Path, size: int, guard: bool, precision: str) -> Path:
        """The ONNX graph's file for a pass at `size` (with the guard's output or not), noted in `graphs`."""
        kind = "guard" if guard else "plain"
        made = (
            f"torch{torch.__version__}" if precision == "fp32" else precision
        )  # an int8 graph is made once, by quantize
        name = f"{onnx_cache.name}-{size}px-{kind}-{made}.onnx"
        self.graphs.append(name)
        return onnx_cache.with_name(name)

    def passes(self) -> list[tuple[int, bool, Any, TorchNetwork | OnnxNetwork]]:
        """(input size, whether it gives the guard's ImageNet output, its transform, its network) for each forward
        pass a photo needs, in the order of `graphs`: the answer's, then the guard's when it reads another size."""
        if self._guard_network is None:
            return [(self.transforms.size, self.guard is not None, self.transforms, self.network)]
        return [
            (self.transforms.size, False, self.transforms, self.network),
            (self._guard_transform.size, True, self._guard_transform, self._guard_network),
        ]

    def served(self, key: dict[str, Any]) -> Served | None:
        """What rebuilds this predictor without fastai (`served`), under `key`; None when it cannot: a learner
        without the standard transforms, the torch backend, or graphs kept nowhere (no `onnx_cache`)."""
        networks = [self.network] + ([self._guard_network] if self._guard_network is not None else [])
        if self.plain is None or not self.graphs or not all(isinstance(n, OnnxNetwork) for n in networks):
            return None
        guard = dataclasses.replace(self.guard, imagenet_weight=None, imagenet_bias=None) if self.guard else None
        return Served(key, self.vocab, self.plain, guard, self.graphs)

    def decoder_pool(self, workers: int, budget: Budget, quotas: Shares | None = None) -> DecoderPool:
        """Decoder workers (`decoding.DecoderPool`) that hand back each photo at the size each pass's resize
        step makes (that resize is then a copy, so the pixels are the same as decoding here); the full
        picture for a learner without the standard transforms. `quotas`: each client's share of decoding time."""
        plain = self.plain
        if plain is None:
            return DecoderPool(workers, budget, draft_size=self.draft_size, quotas=quotas)
        sizes = [plain.resize_to] + ([self._guard_transform.resize_to] if self._guard_transform else [])
        return DecoderPool(workers, budget, sizes, plain.resample, self.draft_size, quotas)

    def predict(self, image: ImageInput | Decoded) -> Prediction:
        """One photo's prediction; `ImageError` (a message for the user) when it cannot be read."""
        result = self.predict_batch([image])[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def predict_batch(
        self, images: Sequence[ImageInput | Decoded | ImageError | None]
    ) -> list[Prediction | ImageError]:
        """A prediction per item, or that item's `ImageError`: a bad item never fails the others.
        An `ImageError` given as an item (refused before decoding) is handed back as it is; a `Decoded`
        photo (a decoder worker's, at `decode_sizes()`) is not decoded again."""
        self._start_serving()
        waiting = []
        for image in images:
            done: Future = Future()
            if isinstance(image, ImageError):
                done.set_result(image)
            else:
                self._waiting.put((image, done))
            waiting.append(done)
        return [done.result() for done in waiting]

    def _start_serving(self) -> None:
        with self._starting:
            if self._serving is None:
                self._serving = threading.Thread(target=self._serve, name="inference", daemon=True)
                self._serving.start()

    def _decode(self, image: ImageInput | None) -> Image.Image:
        """An upright RGB picture, or `ImageError` with a message for the user."""
        return open_image(image, draft_size=self.draft_size)

    def _views(self, image: ImageInput | Decoded | None) -> tuple[Image.Image, Image.Image]:
        """The picture each pass reads: (the head's, the guard's second pass's)."""
        if isinstance(image, Decoded):
            return image.pictures[0], image.pictures[-1]
        picture = self._decode(image)
        return picture, picture

    def _ood_scores(self, imagenet: torch.Tensor | None, n: int) -> torch.Tensor:
        """1 - the ImageNet probability mass on the in-domain classes (zeros without a guard)."""
        if self.guard is None or imagenet is None:
            return torch.zeros(n)
        return self.guard.score(imagenet)

    def _serve(self) -> None:
        """The inference thread: take what is waiting (up to `max_batch_size`), answer it, repeat."""
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch_size and not self._waiting.empty():
                batch.append(self._waiting.get())
            self._answer(batch)

    def _answer(self, batch: list[tuple[ImageInput | Decoded | None, Future]]) -> None:
        pictures, waiting = [], []
        for image, done in batch:
            try:
                pictures.append(self._views(image))
                waiting.append(done)
            except ImageError as refusal:
                done.set_result(refusal)
        if not waiting:
            return
        try:
            predictions = self._classify(pictures)
        except Exception:  # never expected; still, one photo must not fail the others: one at a time
            predictions = [self._alone(picture) for picture in pictures]
        for done, prediction in zip(waiting, predictions):
            done.set_exception(prediction) if isinstance(prediction, Exception) else done.set_result(prediction)

    def _alone(self, picture: tuple[Image.Image, Image.Image]) -> Prediction | Exception:
        try:
            return self._classify([picture])[0]
        except Exception as e:
            return e

    @torch.inference_mode()
    def _classify(self, views: Sequence[tuple[Image.Image, Image.Image]]) -> list[Prediction]:
        outputs = self.network(self.transforms([head for head, _ in views]))
        probs, imagenet = outputs[0], (outputs[1] if len(outputs) > 1 else None)
        if self._guard_network is not None:
            imagenet = self._guard_network(self._guard_transform([guard for _, guard in views]))[1]
        scores = self._ood_scores(imagenet, len(probs))
        threshold = self.guard.threshold if self.guard else float("inf")
        return [
            Prediction(
                label=self.vocab[int(p.argmax())],
                probabilities={c: float(v) for c, v in zip(self.vocab, p)},
                out_of_domain=bool(s > threshold),
                ood_score=float(s),
            )
            for p, s in zip(probs, scores)
        ]
