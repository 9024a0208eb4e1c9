"""The two-tower retrieval model of the references and its losses.

Two tower layouts (`towers`), which decide what trains:
- `backbone+text-head` (MTT-VL, LoRS, MDM): image tower = a timm encoder's pooled feature, trainable,
  no image head; text tower = cached frozen text-encoder embeddings through a trainable residual
  projection head into the image feature space.
- `frozen-backbone+heads` (RepBlend): the image encoder is a fixed feature extractor (parameters frozen,
  always in eval mode) followed by a trainable image head of the text head's form; only the two heads
  train.
Logit scale fixed at 1/temperature (0.07), as in MTT-VL, LoRS, MDM and RepBlend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mdd_bench.errors import unknown

BACKBONE = "backbone+text-head"
FROZEN = "frozen-backbone+heads"
TOWERS = (BACKBONE, FROZEN)
# The submodules each modality trains, per tower layout: what an expert snapshot, a functional
# student's flat vector and an optimiser group hold.
TRAINED_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    BACKBONE: {"image": ("image_encoder", "image_projection"), "text": ("text_projection",)},
    FROZEN: {"image": ("image_projection",), "text": ("text_projection",)},
}


class ProjectionHead(nn.Module):
    """p = W1 x + b1; out = LayerNorm(p + Dropout(W2 GELU(p) + b2)) (MTT-VL / LoRS `ProjectionHead`)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.projection = nn.Linear(in_dim, out_dim)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(out_dim, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.projection(x)
        return self.layer_norm(projected + self.dropout(self.fc(self.gelu(projected))))


class DualEncoder(nn.Module):
    def __init__(
        self,
        image_encoder: nn.Module,
        text_dim: int,
        temperature: float = 0.07,
        projection_dim: int = 0,
        towers: str = BACKBONE,
    ) -> None:
        """projection_dim 0 (the references): the heads end in the image feature space; otherwise both
        towers end in `projection_dim` (with `backbone+text-head` a linear image head is added).
        `towers` (see the module docstring) decides what trains."""
        super().__init__()
        if towers not in TOWERS:
            raise unknown("towers", towers, TOWERS)
        self.towers = towers
        self.image_encoder = image_encoder
        features = int(image_encoder.num_features)
        out = projection_dim or features
        if towers == FROZEN:
            self.image_projection: nn.Module = ProjectionHead(features, out)
            for p in image_encoder.parameters():
                p.requires_grad_(False)
            image_encoder.eval()
        else:
            self.image_projection = nn.Linear(features, projection_dim) if projection_dim else nn.Identity()
        self.text_projection = ProjectionHead(text_dim, out)
        self.temperature = temperature

    @property
    def trained_parts(self) -> dict[str, tuple[str, ...]]:
        return TRAINED_PARTS[self.towers]

    def trained_parameters(self, modality: str) -> list[tuple[str, nn.Parameter]]:
        """(state-dict name, parameter) of what `modality` trains, in a fixed order."""
        return [
            (f"{part}.{name}", param)
            for part in self.trained_parts[modality]
            for name, param in getattr(self, part).named_parameters()
        ]

    def train(self, mode: bool = True) -> DualEncoder:
        """A frozen backbone stays in eval mode: a fixed feature extractor (BatchNorm statistics and
        any dropout included), whatever mode the heads are in."""
        super().train(mode)
        if self.towers == FROZEN:
            self.image_encoder.eval()
        return self

    @property
    def logit_scale(self) -> float:
        return 1.0 / self.temperature

    def encode_images(self, images: torch.Tensor, from_features: bool = False) -> torch.Tensor:
        """Unit-norm image features; `from_features`: `images` are already the encoder's pooled
        features, so only the image head runs (a frozen backbone's output computed once)."""
        features = images if from_features else self.image_encoder(images)
        return F.normalize(self.image_projection(features), dim=-1)

    def encode_texts(self, text_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(text_emb), dim=-1)

    def forward(
        self, images: torch.Tensor, text_emb: torch.Tensor, from_features: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both unit-norm features (what `torch.func.functional_call` runs for a functional student)."""
        return self.encode_images(images, from_features), self.encode_texts(text_emb)

    def logits(self, images: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * self.encode_images(images) @ self.encode_texts(text_emb).T


def infonce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP InfoNCE with the diagonal as positives."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def soft_infonce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """LoRS' eNCE: -sum_j Y_ij log softmax_j(Z_i), row-averaged, symmetrised; Y = I gives `infonce`.

    Rows of Y are not normalised, as in the reference.
    """
    rows = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    cols = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (rows + cols)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LoRS' WBCE: BCE on sigmoid(Z), positives (Y > 0.5) and negatives each given half the weight."""
    probs = torch.sigmoid(logits)
    losses = -targets * torch.log(probs + eps) - (1 - targets) * torch.log(1 - probs + eps)
    positive = (targets > 0.5).detach().float()
    negative = 1.0 - positive
    pos = (losses * positive).sum() / (positive.sum() + eps)
    neg = (losses * negative).sum() / (negative.sum() + eps)
    return 0.5 * (pos + neg)


LOSSES = {"infonce": soft_infonce, "wbce": weighted_bce}
