"""Which hub files an encoder would fetch, and are they cached or else reachable? Asked before a grid.

A grid under the `paper` protocol used to find missing weights in its first cell, after the data and
the shared artifacts were under way, and every cell then failed the same way. This module names the files
each factory's load fetches (`image_files`, `text_files`: None when it fetches none) and answers for them
without downloading them. Offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), reachable means cached. The
cache is huggingface_hub's own `HF_HUB_CACHE` (from the environment variables HF_HUB_CACHE,
HUGGINGFACE_HUB_CACHE or HF_HOME, read when huggingface_hub is imported): the one the loaders read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# What timm and transformers load weights from, safetensors first.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class HubFiles:
    """The files a model load fetches from one hub repository; each entry lists alternatives."""

    what: str  # the subject of the message, e.g. "Image encoder 'nfnet_l0' (ImageNet weights)"
    repo: str
    needs: tuple[tuple[str, ...], ...]


def image_files(name: str, pretrained: str) -> HubFiles | None:
    """What `create_image_encoder(name, pretrained)` fetches: timm's ImageNet weights, from the hub repo
    of the architecture's pretrained config; None for "anchor" and "none" (nothing from the hub)."""
    from mdd_bench.models.image import _spec

    spec = _spec(name)
    if pretrained != "imagenet" or not spec.imagenet:
        return None
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.timm_name)
    if cfg is None or not cfg.hf_hub_id:
        return None
    files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHT_FILES
    return HubFiles(f"Image encoder '{name}' (ImageNet weights)", cfg.hf_hub_id, (files,))


def text_files(name: str) -> HubFiles | None:
    """What `create_text_encoder(name)` fetches: a hub model's config and weights; None for an encoder
    that loads nothing from the hub (the packaged MiniLM and its cuts, a trained student, a local folder)."""
    from mdd_bench.models.text import _REGISTRY, _spec

    spec = _spec(name)
    if name not in _REGISTRY or spec.hub_id is None or spec.needs_weights:
        return None
    return HubFiles(f"Text encoder '{name}'", spec.hub_id, (("config.json",), WEIGHT_FILES))


def offline() -> bool:
    """huggingface_hub's flag, or the variables themselves when they were set after it was imported."""
    import huggingface_hub

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    env = any((v or "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in flags)
    return huggingface_hub.is_offline_mode() or env


def cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_cached(repo: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir()), str)


def hub_problem(files: HubFiles) -> str | None:
    """None when every needed file is cached or the hub answers for it; else one line with the fix."""
    lacking = [group for group in files.needs if not any(is_cached(files.repo, f) for f in group)]
    if not lacking:
        return None
    names = ", ".join(" or ".join(group) for group in lacking)
    where = f"{files.what} is not cached: {files.repo} {names} not in the Hugging Face cache {cache_dir()}"
    if offline():
        return (
            f"{where}, and the hub is off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set). Run once online "
            "without them to download it, or set HF_HUB_CACHE to a cache that holds it."
        )
    reason = unreachable(files.repo, lacking[0])
    if reason is None:
        return None
    return (
        f"{where}, and the hub did not answer for it ({reason}). Run where huggingface.co answers, or set "
        "HF_HUB_CACHE to a cache that holds it."
    )


def unreachable(repo: str, alternatives: tuple[str, ...]) -> str | None:
    """None when the hub answers for one of the files (a metadata request: nothing is downloaded)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    for filename in alternatives:
        try:
            get_hf_file_metadata(hf_hub_url(repo, filename), timeout=PROBE_TIMEOUT_S)
            return None
        except EntryNotFoundError:
            continue
        except Exception as exc:  # connection, timeout, unknown or gated repository, ...
            text = re.sub(r"\s+", " ", str(exc)).strip()[:160]
            return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"the repository has no {' or '.join(alternatives)}"
