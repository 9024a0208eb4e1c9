"""Teacher models from expert checkpoints: the expert bank, Model-Stock merges, the per-iteration sampler.

MDM builds a new "mixed teacher" every iteration by merging two (expert, epoch) checkpoints around the
pretrained anchor, per tensor, with the Model-Stock ratio t = 2 cos(theta) / (1 + cos(theta)) of the
two checkpoints' deltas from the anchor (theta is their angle). The released code rebuilds the model
and reads four checkpoint files from disk every iteration; here the checkpoints are flat vectors held
in memory (or memory-mapped when too large, see `ExpertBank`), the merge is a few vector operations,
and the result is written into one persistent model's parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mdd_bench.distill.resume import buffers, load_buffers, rng_state, set_rng_state
from mdd_bench.errors import MddError
from mdd_bench.workspace.params import MODALITIES, named_parameters

# pretrained: the anchor alone; fine-tuned: one (expert, epoch) checkpoint; weighted-sum: a random
# convex mix r * expert + (1 - r) * anchor, r ~ U(0.1, 0.9); interpolation: the Model-Stock merge.
MODEL_INITS = ("interpolation", "pretrained", "fine-tuned", "weighted-sum")


def model_stock_ratio(cos: torch.Tensor | float) -> torch.Tensor:
    """t = 2 cos / (1 + cos) (Model Stock with two models), on a cosine clamped to [-1, 1].

    The reference's ratio diverges as cos -> -1 (t = -2e12 for opposite deltas, weights of 1e11);
    here t is floored at -1 (reached at cos = -1/3), so a tensor whose two deltas disagree moves at
    most one average-delta away from the anchor. Model Stock itself assumes cos > 0.
    """
    cos = torch.as_tensor(cos, dtype=torch.float64).clamp(-1, 1)
    return (2 * cos / (cos + 1 + 1e-12)).clamp_min(-1.0)


def merge_tensor(anchor: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, alpha: float) -> torch.Tensor:
    """W0 + alpha * t * ((W1 + W2) / 2 - W0) for one tensor; t from the cosine of W1 - W0 and W2 - W0."""
    d1, d2 = (w1 - anchor).double(), (w2 - anchor).double()
    cos = (d1 * d2).sum() / (d1.norm() * d2.norm() + 1e-12)
    t = model_stock_ratio(cos)
    return (anchor.double() + alpha * t * ((w1.double() + w2.double()) / 2 - anchor.double())).to(
        anchor.dtype
    )


def model_stock_merge(
    anchor: dict[str, torch.Tensor],
    w1: dict[str, torch.Tensor],
    w2: dict[str, torch.Tensor],
    alpha: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Per-tensor merge of two state dicts around `anchor` (the reference's rules).

    Keys absent from the anchor are dropped; keys that are not floating point, missing from an expert
    or of another shape keep the anchor's value; the ratio is computed in float64.
    """
    out: dict[str, torch.Tensor] = {}
    for key, base in anchor.items():
        a, b = w1.get(key), w2.get(key)
        mergeable = (
            base.is_floating_point()
            and a is not None
            and b is not None
            and a.shape == base.shape
            and b.shape == base.shape
        )
        out[key] = merge_tensor(base, a, b, alpha) if mergeable else base.clone()
    return out


def segment_ids(sizes: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Segment index of every element of a flat vector made of tensors of `sizes` elements."""
    counts = torch.as_tensor(list(sizes), device=device)
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)


def merge_flat(
    anchor: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    sizes: Sequence[int],
    alpha: float = 1.0,
    seg: torch.Tensor | None = None,
) -> torch.Tensor:
    """`model_stock_merge` on flat vectors whose consecutive segments of `sizes` are the tensors.

    Cosines are accumulated in float64 (as the reference's ratio); the update itself is in the
    vectors' dtype, as W0 + alpha t (d1 + d2) / 2 with d = W - W0.
    """
    if sum(sizes) != anchor.numel() or anchor.shape != w1.shape or w1.shape != w2.shape:
        raise MddError("merge_flat: vectors and segment sizes disagree.")
    seg = segment_ids(sizes, anchor.device) if seg is None else seg
    d1, d2 = w1 - anchor, w2 - anchor
    zeros = torch.zeros(len(sizes), dtype=torch.float64, device=anchor.device)
    dot = zeros.index_add(0, seg, (d1 * d2).double())
    n1 = zeros.index_add(0, seg, (d1 * d1).double()).sqrt()
    n2 = zeros.index_add(0, seg, (d2 * d2).double()).sqrt()
    t = model_stock_ratio(dot / (n1 * n2 + 1e-12))
    scale = (alpha * t).to(anchor.dtype)[seg]
    return anchor + scale * (d1 + d2) / 2


class ExpertBank:
    """Every stored (expert, epoch) checkpoint as flat per-modality vectors on the device.

    Held in memory when they fit in `max_bytes` (the `cpu` protocol's 5 x 4 checkpoints are a few MB);
    otherwise each is read through the store's memory map when asked for (the OS page cache keeps hot
    ones), never by re-parsing a checkpoint file.
    """

    def __init__(self, store, device: torch.device, max_bytes: int = 4 * 2**30) -> None:
        self.store = store
        self.device = device
        self.layout = store.manifest["layout"]
        self.keys = [(e, p) for e in store.complete_experts for p in store.epochs]
        if not self.keys:
            raise MddError("The expert store holds no complete expert. Run `mdd-bench experts` first.")
        sizes = [sum(int(np.prod(shape)) for _, shape in self.layout[m]) for m in MODALITIES]
        self.resident = len(self.keys) * sum(sizes) * 4 <= max_bytes
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._segments: dict[str, torch.Tensor] = {}
        if self.resident:
            for key in self.keys:
                self._cache[key] = self._read(*key)

    def _read(self, expert: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, text = self.store.flat(expert, epoch)
        return image.to(self.device, torch.float32), text.to(self.device, torch.float32)

    @property
    def experts(self) -> list[int]:
        return sorted({e for e, _ in self.keys})

    def get(self, expert: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (expert, epoch) not in self.keys:
            raise MddError(f"No stored checkpoint for expert {expert} epoch {epoch}.")
        return self._cache[(expert, epoch)] if self.resident else self._read(expert, epoch)

    def segment_sizes(self, modality: str) -> list[int]:
        return [int(np.prod(shape)) for _, shape in self.layout[modality]]

    def segments(self, modality: str) -> torch.Tensor:
        if modality not in self._segments:
            self._segments[modality] = segment_ids(self.segment_sizes(modality), self.device)
        return self._segments[modality]


def _reset(module: nn.Module) -> None:
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()


class TeacherSampler:
    """One persistent model whose parameters are overwritten with a new teacher on each `sample()`.

    The anchor is the pretrained image encoder with freshly initialised heads (a new random init per
    call, as the reference: there is no pretrained projection head). Parameters are frozen
    (requires_grad False): gradients only need to reach the inputs (pixels, text embeddings).
    Buffers stay the anchor's.
    """

    def __init__(
        self,
        workspace,
        bank: ExpertBank,
        mode: str = "interpolation",
        alpha: float = 1.0,
        epochs: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if mode not in MODEL_INITS:
            raise MddError(f"Unknown model init '{mode}'. Use one of: {', '.join(MODEL_INITS)}.")
        self.bank, self.mode, self.alpha = bank, mode, alpha
        self.model = workspace.fresh_model(seed)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.params = {m: [p for _, p in named_parameters(self.model, m)] for m in MODALITIES}
        layout = {m: [[n, list(p.shape)] for n, p in named_parameters(self.model, m)] for m in MODALITIES}
        if layout != {m: [[n, list(s)] for n, s in bank.layout[m]] for m in MODALITIES}:
            raise MddError("The experts' parameter layout differs from this protocol's model. Retrain them.")
        self.encoder_anchor = torch.cat(
            [p.detach().reshape(-1) for p in self.model.image_encoder.parameters()]
        )
        self.heads = {
            part: copy.deepcopy(getattr(self.model, part)).cpu()
            for part in ("image_projection", "text_projection")
        }
        stored = sorted({p for _, p in bank.keys if p > 0})
        self.epochs = list(epochs) if epochs else stored
        missing = sorted(set(self.epochs) - set(stored))
        if missing or not self.epochs:
            raise MddError(f"Expert epochs {missing or self.epochs} are not stored (have {stored}).")
        self.rng = np.random.default_rng([seed, 4242])
        self.last: dict[str, Any] = {}

    def anchor(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, text) vectors of the anchor: pretrained encoder, heads freshly drawn."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.rng.integers(2**31)))
            for head in self.heads.values():
                _reset(head)
        device = self.encoder_anchor.device
        image_head = [p.detach().reshape(-1) for p in self.heads["image_projection"].parameters()]
        image = torch.cat([self.encoder_anchor, *(h.to(device) for h in image_head)])
        text = torch.cat([p.detach().reshape(-1) for p in self.heads["text_projection"].parameters()])
        return image, text.to(device)

    def _draw(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(e1, p1) uniform; e2 uniform; p2 uniform over the epochs, excluding p1 when e2 == e1."""
        experts = self.bank.experts
        e1, p1 = int(self.rng.choice(experts)), int(self.rng.choice(self.epochs))
        e2 = int(self.rng.choice(experts))
        choices = [p for p in self.epochs if not (e2 == e1 and p == p1)] or self.epochs
        return (e1, p1), (e2, int(self.rng.choice(choices)))

    def vectors(self) -> dict[str, torch.Tensor]:
        """The next teacher's flat vectors per modality."""
        if self.mode == "fine-tuned":
            first, _ = self._draw()
            self.last = {"checkpoints": [first]}
            return dict(zip(MODALITIES, self.bank.get(*first), strict=True))
        anchor = dict(zip(MODALITIES, self.anchor(), strict=True))
        if self.mode == "pretrained":
            self.last = {}
            return anchor
        first, second = self._draw()
        w1 = dict(zip(MODALITIES, self.bank.get(*first), strict=True))
        if self.mode == "weighted-sum":
            r = float(self.rng.uniform(0.1, 0.9))
            self.last = {"checkpoints": [first], "r": r}
            return {m: r * w1[m] + (1 - r) * anchor[m] for m in MODALITIES}
        w2 = dict(zip(MODALITIES, self.bank.get(*second), strict=True))
        self.last = {"checkpoints": [first, second]}
        return {
            m: merge_flat(
                anchor[m], w1[m], w2[m], self.bank.segment_sizes(m), self.alpha, self.bank.segments(m)
            )
            for m in MODALITIES
        }

    def state_dict(self) -> dict[str, Any]:
        # The parameters are overwritten at every sample; a train-mode forward may update the buffers.
        return {"rng": rng_state(self.rng), "buffers": buffers(self.model), "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.rng, state["rng"])
        load_buffers(self.model, state["buffers"])
        self.last = dict(state["last"])

    @torch.no_grad()
    def sample(self) -> nn.Module:
        """Overwrite the model with the next teacher; returns it (in train mode, as the reference)."""
        for modality, vector in self.vectors().items():
            offset = 0
            for p in self.params[modality]:
                n = p.numel()
                p.copy_(vector[offset : offset + n].view_as(p))
                offset += n
        return self.model.train()
