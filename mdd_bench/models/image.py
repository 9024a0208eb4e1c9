"""Image encoders through timm, always returning pooled features `[B, num_features]`.

The references (MTT-VL, LoRS, MDM) use NFNet-L0 as the source encoder and evaluate transfer to
NF-ResNet50 / NF-RegNet-B1. For the latter two they mistakenly kept the 1000-class ImageNet logits
as "features"; mdd-bench uses the pooled penultimate features of every encoder instead
(`num_classes=0`, global average pooling), so feature dimensions are 2304 / 2048 / 960, not 1000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mdd_bench.errors import MddError, unknown

PRETRAINED = ("none", "imagenet", "anchor")


@dataclass(frozen=True)
class ImageEncoderSpec:
    timm_name: str
    family: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Builds with `img_size=resolution` (ViTs size their position embeddings from it).
    sized: bool = False
    default_resolution: int = 224
    # False when our kwargs change the architecture, so timm's published weights would not fit.
    imagenet: bool = True


_REGISTRY: dict[str, ImageEncoderSpec] = {
    # Paper protocol.
    "nfnet_l0": ImageEncoderSpec("nfnet_l0", "nfnet"),
    "nf_resnet50": ImageEncoderSpec("nf_resnet50", "nfnet"),
    "nf_regnet_b1": ImageEncoderSpec("nf_regnet_b1", "nfnet"),
    # CPU protocol: timm's tiny test architectures, trained from scratch ("anchor") at 32x32.
    "test_nfnet": ImageEncoderSpec("test_nfnet", "nfnet", default_resolution=32),
    "test_resnet": ImageEncoderSpec("test_resnet", "resnet", default_resolution=32),
    "test_convnext": ImageEncoderSpec("test_convnext", "convnext", default_resolution=32),
    "test_efficientnet": ImageEncoderSpec("test_efficientnet", "efficientnet", default_resolution=32),
    # Patch 16 would leave 2x2 tokens at 32x32; patch 4 gives 8x8. Average pooling over patch tokens
    # (not the class token) matches the other encoders' global average pooling.
    "test_vit": ImageEncoderSpec(
        "test_vit",
        "vit",
        kwargs={"patch_size": 4, "global_pool": "avg"},
        sized=True,
        default_resolution=32,
        imagenet=False,
    ),
}


def list_image_encoders() -> list[str]:
    return sorted(_REGISTRY)


def _spec(name: str) -> ImageEncoderSpec:
    if name not in _REGISTRY:
        raise unknown("image encoder", name, _REGISTRY)
    return _REGISTRY[name]


def _timm_kwargs(spec: ImageEncoderSpec, resolution: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_classes": 0, **spec.kwargs}
    if spec.sized:
        kwargs["img_size"] = resolution or spec.default_resolution
    return kwargs


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MddError(f"Image encoder weights '{path}' do not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MddError(f"Could not read image encoder weights '{path}': {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MddError(f"Image encoder weights '{path}' are not a state dict.")
    return state


def load_weights(model: nn.Module, weights: str | Path, name: str) -> None:
    """Strict load: a partial match would silently leave random layers in a 'pretrained' encoder."""
    state = _read_state_dict(Path(weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MddError(
            f"Weights '{weights}' do not fit image encoder '{name}' ({first}). "
            "Were they saved from a different encoder?"
        ) from None


def create_image_encoder(
    name: str,
    pretrained: str = "none",
    weights: str | Path | None = None,
    resolution: int | None = None,
) -> nn.Module:
    """Build encoder `name`; its forward returns pooled features and it exposes `.num_features`.

    pretrained: "none" (random init), "imagenet" (timm's published weights, needs the hub or its
    cache), "anchor" (mdd-bench's own pretraining, read from `weights`). Given `weights`, they are
    loaded strictly on top of a randomly initialised model, whatever `pretrained` says.
    """
    import timm

    spec = _spec(name)
    if pretrained not in PRETRAINED:
        raise unknown("pretrained mode", pretrained, PRETRAINED)
    if pretrained == "anchor" and weights is None:
        raise MddError(
            f"pretrained='anchor' needs the weights file of image encoder '{name}'. Anchors are "
            "produced by the evaluation engine; pass weights=PATH or use pretrained='none'."
        )
    if pretrained == "imagenet" and not spec.imagenet:
        raise MddError(f"Image encoder '{name}' has no ImageNet weights; use 'anchor' or 'none'.")
    download = pretrained == "imagenet" and weights is None
    kwargs = _timm_kwargs(spec, resolution)
    try:
        model = timm.create_model(spec.timm_name, pretrained=download, **kwargs)
    except Exception as exc:
        if not download:
            raise
        raise MddError(
            f"Could not load ImageNet weights for {name} (offline?). Run once with internet or set "
            f"HF_HUB_OFFLINE=0. ({type(exc).__name__})"
        ) from None
    if weights is not None:
        load_weights(model, weights, name)
    return model


def image_feature_dim(name: str, resolution: int | None = None) -> int:
    """Feature width without allocating weights (built on the meta device)."""
    import timm

    spec = _spec(name)
    with torch.device("meta"):
        model = timm.create_model(spec.timm_name, pretrained=False, **_timm_kwargs(spec, resolution))
    return int(model.num_features)
