"""What a reference's file holds once read, before any check against a protocol, and the reading
helpers the readers (`lors.py`, `mttvl.py`, `mdm.py`) share, so none of them imports another."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mdd_bench.errors import MddError
from mdd_bench.interop.torchfile import as_tensor


@dataclass
class ReferenceSet:
    """What a reference's file holds, before any check against a protocol."""

    images: torch.Tensor  # [N, 3, R, R] in the reference's normalised pixel space
    texts: torch.Tensor  # [N, D] in the reference's text encoder space
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    eval_loss: str = "infonce"  # the loss the reference's own evaluation trains with (native track)
    # Whether the reference's own evaluation applies DSA (native track); None: the protocol's recipe.
    eval_dsa: bool | None = None
    notes: list[str] = field(default_factory=list)
    found_keys: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)


def learned_lrs(raw: dict, path: Path, notes: list[str]) -> dict[str, torch.Tensor]:
    """`syn_lr_img`/`syn_lr_txt` -> `lr_img`/`lr_txt` (both or neither)."""
    have = [k for k in ("syn_lr_img", "syn_lr_txt") if k in raw]
    if not have:
        notes.append("no learned step sizes in the file: the native track uses the protocol's lrs")
        return {}
    if len(have) == 1:
        other = "syn_lr_txt" if have[0] == "syn_lr_img" else "syn_lr_img"
        raise MddError(f"'{path}' has {have[0]} but not {other}; a set ships both learned step sizes.")
    lrs = {new: as_tensor(raw[old], old, path).float().reshape(()) for old, new in
           (("syn_lr_img", "lr_img"), ("syn_lr_txt", "lr_txt"))}  # fmt: skip
    return lrs
