"""`DistilledSet`: what every method returns and the evaluator trains on.

Stored as safetensors (tensors) plus a JSON sidecar (provenance); loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mdd_bench.cache import atomic_write, atomic_write_json
from mdd_bench.errors import MddError, cannot_write
from mdd_bench.models.dual import BACKBONE

# Optional tensors a method may ship (its "native" evaluation uses them):
#   similarity            full learned similarity matrix [N, N] (LoRS full)
#   sim_diag, sim_left, sim_right, sim_alpha
#                         low-rank similarity diag(a) + alpha / r * L R^T (LoRS low-rank)
#   lr_img, lr_txt        learned evaluation step sizes (MTT-VL, TESLA, LoRS)
EXTRA_KEYS = ("similarity", "sim_diag", "sim_left", "sim_right", "sim_alpha", "lr_img", "lr_txt")


@dataclass
class DistilledSet:
    images: torch.Tensor  # float [N, 3, R, R] in the protocol's normalised pixel space
    texts: torch.Tensor  # float [N, D] in the source text encoder's embedding space
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A stored artifact: detached CPU tensors, whatever device the method distilled on.
        self.images, self.texts = _stored(self.images), _stored(self.texts)
        self.extras = {k: _stored(v) for k, v in self.extras.items()}
        if self.images.ndim != 4 or self.texts.ndim != 2:
            raise ValueError("images must be [N, 3, R, R] and texts [N, D]")
        if self.images.shape[0] != self.texts.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.texts.shape[0]} texts: pairs must match"
            )
        unknown = sorted(set(self.extras) - set(EXTRA_KEYS))
        if unknown:
            raise ValueError(f"unknown extra '{unknown[0]}'; allowed: {', '.join(EXTRA_KEYS)}")
        low_rank = {"sim_diag", "sim_left", "sim_right", "sim_alpha"}
        if low_rank & set(self.extras) and not low_rank <= set(self.extras):
            raise ValueError("a low-rank similarity needs sim_diag, sim_left, sim_right and sim_alpha")

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def storage_bytes(self) -> int:
        """Bytes of everything a user must store to reuse this set (pixels, texts and extras)."""
        tensors = [self.images, self.texts, *self.extras.values()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def similarity(self) -> torch.Tensor | None:
        """The learned N x N similarity target, or None when the method learned none."""
        if "similarity" in self.extras:
            return self.extras["similarity"]
        if "sim_diag" in self.extras:
            left, right = self.extras["sim_left"], self.extras["sim_right"]
            alpha = float(self.extras["sim_alpha"])
            return torch.diag(self.extras["sim_diag"]) + alpha / left.shape[1] * left @ right.T
        return None

    def learned_lrs(self) -> tuple[float, float] | None:
        if "lr_img" in self.extras and "lr_txt" in self.extras:
            return float(self.extras["lr_img"]), float(self.extras["lr_txt"])
        return None

    @property
    def towers(self) -> str:
        """Which parameters the distillation's student trained (`models.dual.TOWERS`), so which ones the
        learned lrs are step sizes of; sets that do not say are the image encoder and text head's."""
        return str(self.provenance.get("towers", BACKBONE))

    # ------------------------------------------------------------------ storage

    def save(self, path: str | Path) -> Path:
        """Write `<path>.safetensors` and `<path>.json`; returns the safetensors path."""
        base = _base(path)
        tensors = {"images": self.images, "texts": self.texts, **self.extras}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        tensor_path = _with_ext(base, ".safetensors")
        sidecar = {"provenance": self.provenance, "extras": sorted(self.extras), "size": self.size}
        try:
            atomic_write(tensor_path, lambda p: save_file(tensors, str(p)))
            atomic_write_json(_with_ext(base, ".json"), sidecar)
        except OSError as exc:
            raise cannot_write(tensor_path, exc) from None
        return tensor_path

    @staticmethod
    def check_path(path: str | Path) -> tuple[Path, Path]:
        """(tensor file, sidecar) of a saved set; a missing one is a one-line error."""
        base = _base(path)
        tensor_path, sidecar_path = _with_ext(base, ".safetensors"), _with_ext(base, ".json")
        for p in (tensor_path, sidecar_path):
            if not p.is_file():
                raise MddError(f"Distilled set file '{p}' is missing. Pass the path of a saved set.")
        return tensor_path, sidecar_path

    @classmethod
    def load(cls, path: str | Path) -> DistilledSet:
        """The saved set at `path`; a file that is damaged, not a set or not one set is a one-line error
        naming it (every reader of a stored set comes through here)."""
        base = _base(path)
        tensor_path, sidecar_path = cls.check_path(path)
        fix = "Pass a set mdd-bench saved (run, import), whole, or make it again."
        try:
            tensors = load_file(str(tensor_path))
            sidecar = json.loads(sidecar_path.read_text())
        except Exception as exc:  # safetensors, JSON, decoding and OS errors alike
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MddError(f"Distilled set '{base}' cannot be read ({reason}). {fix}") from None
        missing = [k for k in ("images", "texts") if k not in tensors]
        if missing:
            have = ", ".join(sorted(tensors)) or "nothing"
            raise MddError(f"Distilled set '{base}' lacks '{missing[0]}' (it holds {have}). {fix}")
        provenance = sidecar.get("provenance", {}) if isinstance(sidecar, dict) else None
        if not isinstance(provenance, dict):
            raise MddError(f"Distilled set '{base}': {sidecar_path.name} is not a set's sidecar. {fix}")
        images, texts = tensors.pop("images"), tensors.pop("texts")
        try:
            return cls(images, texts, tensors, provenance)
        except ValueError as exc:
            raise MddError(f"Distilled set '{base}': {exc}. {fix}") from None


def _stored(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself when it already is a plain CPU tensor, else a detached CPU copy."""
    if tensor.requires_grad or tensor.device.type != "cpu":
        return tensor.detach().cpu()
    return tensor


def _base(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in {".safetensors", ".json"} else path


def _with_ext(base: Path, ext: str) -> Path:
    """Append, never replace: `lors_lr0.1` and `lors_lr0.5` must not both become `lors_lr0.*`."""
    return base.with_name(base.name + ext)
