"""Running the exported network: class probabilities, plus the pretrained network's ImageNet
probabilities for the out-of-domain guard, from one forward pass.

The guard's ImageNet classifier (stored in model.pkl by `export.attach_ood`) reads the body's
average-pooled features; fastai's head starts with `AdaptiveConcatPool2d` ([max, avg]), so the
same pooled tensor feeds both heads. This is only the pretrained network's ImageNet reading when
the body is the pretrained one (the linear-probe recipe, `train.linear_probe`).

Two interchangeable backends. PyTorch runs fastai's model as it is. ONNX Runtime runs the same
weights, exported once at start-up (about a second); on a CPU it is about 3x faster for this
network and its probabilities agree with PyTorch's to ~1e-9 (BENCHMARKS.md), so it is the default
when installed. BEAR_BACKEND=torch selects PyTorch.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

ImageNetHead = tuple[torch.Tensor, torch.Tensor]
"""The pretrained classifier's (weight, bias)."""


class TorchNetwork(nn.Module):
    """fastai's `Sequential(body, head)`, returning (probabilities,), or (probabilities, ImageNet
    probabilities) when given the pretrained ImageNet classifier."""

    def __init__(self, model: nn.Module, imagenet: ImageNetHead | None = None):
        super().__init__()
        self.body, head = model[0], model[1]
        self.pool, self.classify = head[:2], head[2:]  # fastai's head: concat-pool + flatten, then the layers
        self.imagenet = None
        if imagenet is not None:
            weight, bias = imagenet
            self.imagenet = nn.Linear(weight.shape[1], weight.shape[0])
            self.imagenet.weight.data, self.imagenet.bias.data = weight.float().clone(), bias.float().clone()
        self.eval()

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.pool(self.body(batch))
        probabilities = torch.softmax(self.classify(features), dim=1)
        if self.imagenet is None:
            return (probabilities,)
        average = features[:, features.shape[1] // 2 :]  # AdaptiveConcatPool2d: [max, avg]
        return probabilities, torch.softmax(self.imagenet(average), dim=1)


class OnnxNetwork:
    """The same network, exported to ONNX in memory and run by ONNX Runtime."""

    def __init__(self, model: nn.Module, size: int, imagenet: ImageNetHead | None = None):
        import onnxruntime

        graph = io.BytesIO()
        outputs = ["probabilities"] + (["imagenet"] if imagenet is not None else [])
        torch.onnx.export(
            TorchNetwork(model, imagenet),
            (torch.zeros(1, 3, size, size),),
            graph,
            input_names=["images"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["images", *outputs]},
            dynamo=False,  # the TorchScript exporter: needs only `onnx`, handles this CNN
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"images": np.ascontiguousarray(batch.numpy())})
        return tuple(torch.from_numpy(output) for output in outputs)


def network(
    model: nn.Module, size: int, backend: str | None = None, imagenet: ImageNetHead | None = None
) -> TorchNetwork | OnnxNetwork:
    """`backend` "onnx" or "torch" (settings.backend); by default ONNX Runtime when it and `onnx`
    are installed."""
    backend = backend or ("onnx" if _has_onnxruntime() else "torch")
    if backend not in ("onnx", "torch"):
        raise ValueError(f"BEAR_BACKEND must be 'onnx' or 'torch', not {backend!r}")
    return OnnxNetwork(model, size, imagenet) if backend == "onnx" else TorchNetwork(model, imagenet)


def _has_onnxruntime() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
