"""The two-tower retrieval model of the references and its losses.

Image tower: a timm encoder's pooled feature, trainable, no image head. Text tower: cached frozen
text-encoder embeddings through a trainable residual projection head into the image feature space.
Logit scale fixed at 1/temperature (0.07), as in MTT-VL, LoRS and MDM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        self, image_encoder: nn.Module, text_dim: int, temperature: float = 0.07, projection_dim: int = 0
    ) -> None:
        """projection_dim 0 (the references): text projected into the image feature space, no image
        head; otherwise both towers end in `projection_dim` (a linear image head is added)."""
        super().__init__()
        self.image_encoder = image_encoder
        features = int(image_encoder.num_features)
        self.image_projection = nn.Linear(features, projection_dim) if projection_dim else nn.Identity()
        self.text_projection = ProjectionHead(text_dim, projection_dim or features)
        self.temperature = temperature

    @property
    def logit_scale(self) -> float:
        return 1.0 / self.temperature

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_projection(self.image_encoder(images)), dim=-1)

    def encode_texts(self, text_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(text_emb), dim=-1)

    def forward(self, images: torch.Tensor, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both unit-norm features (what `torch.func.functional_call` runs for a functional student)."""
        return self.encode_images(images), self.encode_texts(text_emb)

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
