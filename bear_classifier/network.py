"""Running the exported network: class probabilities plus the pooled features the out-of-domain
detector needs, from one forward pass.

Two interchangeable backends. PyTorch runs fastai's model as it is. ONNX Runtime runs the same
weights, exported once at start-up (about a second); on a CPU it is about 3x faster for this
network and its probabilities agree with PyTorch's to ~1e-9 (BENCHMARKS.md), so it is the default
when installed. BEAR_BACKEND=torch selects PyTorch.
"""
from __future__ import annotations

import io
import os

import numpy as np
import torch
from torch import nn


class TorchNetwork(nn.Module):
    """fastai's `Sequential(body, head)`, returning (probabilities, pooled features)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.body, head = model[0], model[1]
        self.pool, self.classify = head[:2], head[2:]  # fastai's head: concat-pool + flatten, then the layers
        self.eval()

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pool(self.body(batch))
        return torch.softmax(self.classify(features), dim=1), features


class OnnxNetwork:
    """The same network, exported to ONNX in memory and run by ONNX Runtime."""

    def __init__(self, model: nn.Module, size: int):
        import onnxruntime

        graph = io.BytesIO()
        torch.onnx.export(
            TorchNetwork(model),
            (torch.zeros(1, 3, size, size),),
            graph,
            input_names=["images"],
            output_names=["probabilities", "features"],
            dynamic_axes={name: {0: "batch"} for name in ("images", "probabilities", "features")},
            dynamo=False,  # the TorchScript exporter: needs only `onnx`, handles this CNN
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probabilities, features = self.session.run(None, {"images": np.ascontiguousarray(batch.numpy())})
        return torch.from_numpy(probabilities), torch.from_numpy(features)


def network(model: nn.Module, size: int, backend: str | None = None) -> TorchNetwork | OnnxNetwork:
    """`backend` "onnx" or "torch"; by default BEAR_BACKEND, else ONNX Runtime when it and `onnx`
    are installed."""
    backend = backend or os.environ.get("BEAR_BACKEND") or ("onnx" if _has_onnxruntime() else "torch")
    if backend not in ("onnx", "torch"):
        raise ValueError(f"BEAR_BACKEND must be 'onnx' or 'torch', not {backend!r}")
    return OnnxNetwork(model, size) if backend == "onnx" else TorchNetwork(model)


def _has_onnxruntime() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
