"""Image-text retrieval metrics (IR@K, TR@K, their mean and rsum), computed in bounded memory.

TR (image -> text): an image is a hit at K when one of its ground-truth captions is in the top K.
IR (text -> image): a caption is a hit at K when its one image is in the top K.

Ties. A wrong item that scores exactly as high as the ground truth is a tie, and ties are broken
uniformly at random: a query's recall@K is the *expected* hit under that tie-breaking, computed in
closed form (no sampling). With h wrong items strictly above the best ground truth, t wrong items tied
with it and g ground-truth items tied at the top, the ground truth falls within the top K with
probability 1 - C(t, m) / C(t + g, m), m = K - h (0 when m <= 0, 1 when m > t); for IR (g = 1) this is
m / (t + 1). So a collapsed model (all embeddings equal, or zero vectors) scores chance, never 100, and
duplicate captions of different images share their hits instead of both counting as hits. Ties among an
image's own captions are not errors. Scores are compared in float64 with a tolerance of 1e-9 relative
to the query and gallery norms, so equal embeddings tie whatever the matrix kernel's summation order.

Non-finite embeddings are an error: a ranking of NaNs means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mdd_bench.errors import MddError
from mdd_bench.workspace.pairs import embed_images, embed_texts

if TYPE_CHECKING:
    from mdd_bench.models.dual import DualEncoder
    from mdd_bench.workspace import Workspace

KS = (1, 5, 10)
METRICS = ("IR@1", "IR@5", "IR@10", "TR@1", "TR@5", "TR@10")
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RankCounts:
    """Per query: wrong items strictly above the best ground truth, wrong items tied with it, and
    ground-truth items tied at that score (at least one)."""

    above: torch.Tensor
    tied: torch.Tensor
    gt_tied: torch.Tensor

    def hit_probability(self, k: int) -> torch.Tensor:
        """P(a ground truth is in the top k) under uniform random tie-breaking, per query (float64)."""
        m = k - self.above
        t = self.tied.double()
        g = self.gt_tied.double()
        miss = torch.ones_like(t)
        for i in range(k):
            # The i-th tied slot goes to a wrong item: (t - i) of the (t + g - i) left are wrong.
            factor = ((t - i).clamp(min=0) / (t + g - i).clamp(min=1)).where(m > i, torch.ones_like(t))
            miss = miss * factor
        return 1.0 - miss


def _check_finite(name: str, emb: torch.Tensor) -> None:
    if not bool(torch.isfinite(emb).all()):
        raise MddError(
            f"{name} embeddings contain NaN or inf: the model diverged. Lower the evaluation learning "
            "rate or check the distilled set for non-finite values."
        )


def retrieval_counts(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image: torch.Tensor | np.ndarray,
    chunk: int = 256,
) -> tuple[RankCounts, RankCounts]:
    """(per-image counts for TR, per-caption counts for IR); embeddings are compared by dot product."""
    _check_finite("Image", image_emb)
    _check_finite("Text", text_emb)
    image_emb = image_emb.double()
    text_emb = text_emb.double()
    owner = torch.as_tensor(np.asarray(caption_image), dtype=torch.long, device=text_emb.device)
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]
    img_norm, txt_norm = image_emb.norm(dim=1), text_emb.norm(dim=1)

    above = torch.empty(n_txt, dtype=torch.long)
    tied = torch.empty(n_txt, dtype=torch.long)
    for start in range(0, n_txt, chunk):
        sims = text_emb[start : start + chunk] @ image_emb.T
        gt = sims.gather(1, owner[start : start + chunk, None])
        tol = TIE_TOLERANCE * txt_norm[start : start + chunk, None] * img_norm.max()
        above[start : start + chunk] = (sims > gt + tol).sum(1).cpu()
        # The ground truth ties with itself: the rest of the tied items are wrong images.
        tied[start : start + chunk] = ((sims - gt).abs() <= tol).sum(1).cpu() - 1
    caption_counts = RankCounts(above, tied, torch.ones(n_txt, dtype=torch.long))

    # Captions of each image as a padded index table, so a chunk gathers its ground-truth scores
    # without an images x captions mask.
    counts = torch.bincount(owner, minlength=n_img)
    if int(counts.min()) == 0:
        raise ValueError("every image needs at least one caption")
    order = torch.argsort(owner, stable=True)
    slot = torch.arange(n_txt, device=owner.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    table = torch.full((n_img, int(counts.max())), -1, dtype=torch.long, device=owner.device)
    table[owner[order], slot] = order

    i_above = torch.empty(n_img, dtype=torch.long)
    i_tied = torch.empty(n_img, dtype=torch.long)
    i_gt = torch.empty(n_img, dtype=torch.long)
    for start in range(0, n_img, chunk):
        sims = image_emb[start : start + chunk] @ text_emb.T
        caps = table[start : start + chunk]
        gt = sims.gather(1, caps.clamp(min=0)).masked_fill(caps < 0, float("-inf"))
        best = gt.max(1, keepdim=True).values
        tol = TIE_TOLERANCE * img_norm[start : start + chunk, None] * txt_norm.max()
        gt_top = ((gt >= best - tol) & (caps >= 0)).sum(1)
        i_above[start : start + chunk] = (sims > best + tol).sum(1).cpu()
        i_tied[start : start + chunk] = (((sims - best).abs() <= tol).sum(1) - gt_top).cpu()
        i_gt[start : start + chunk] = gt_top.cpu()
    return RankCounts(i_above, i_tied, i_gt), caption_counts


def recall_at(counts: RankCounts, k: int) -> float:
    return 100.0 * float(counts.hit_probability(k).mean())


def retrieval_metrics(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image: torch.Tensor | np.ndarray,
    chunk: int = 256,
) -> dict[str, float]:
    image_counts, caption_counts = retrieval_counts(image_emb, text_emb, caption_image, chunk)
    out = {f"IR@{k}": recall_at(caption_counts, k) for k in KS}
    out.update({f"TR@{k}": recall_at(image_counts, k) for k in KS})
    values = [out[m] for m in METRICS]
    out["mean"] = float(np.mean(values))
    out["rsum"] = float(np.sum(values))
    return out


def score(
    workspace: Workspace, model: DualEncoder, split: str, text_encoder: str | None = None
) -> dict[str, float]:
    """Retrieval metrics of `model` on a split of the workspace's dataset (val for choices, test for
    reported numbers), its captions embedded by `text_encoder` (the protocol's source by default)."""
    part = workspace.dataset.splits[split]
    image_emb = embed_images(model, part, workspace.protocol)
    text_emb = embed_texts(model, workspace.text_embeddings(split, text_encoder))
    return retrieval_metrics(image_emb, text_emb, part.caption_image)
