"""Image-text retrieval metrics (IR@K, TR@K, their mean and rsum), computed in bounded memory.

TR (image -> text): an image's rank is the best rank among its ground-truth captions.
IR (text -> image): a caption's rank is the rank of its one image. Ranks count strictly higher scores,
so similarities are processed in chunks and never held as a full images x captions matrix.
"""

from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10)
METRICS = ("IR@1", "IR@5", "IR@10", "TR@1", "TR@5", "TR@10")


def retrieval_ranks(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image: torch.Tensor | np.ndarray,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ranks for TR, caption ranks for IR), 0-based; embeddings are compared by dot product."""
    image_emb = image_emb.float()
    text_emb = text_emb.float()
    owner = torch.as_tensor(np.asarray(caption_image), dtype=torch.long, device=text_emb.device)
    n_img, n_txt = image_emb.shape[0], text_emb.shape[0]

    caption_ranks = torch.empty(n_txt, dtype=torch.long)
    for start in range(0, n_txt, chunk):
        sims = text_emb[start : start + chunk] @ image_emb.T
        gt = sims.gather(1, owner[start : start + chunk, None])
        caption_ranks[start : start + chunk] = (sims > gt).sum(1).cpu()

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

    image_ranks = torch.empty(n_img, dtype=torch.long)
    for start in range(0, n_img, chunk):
        sims = image_emb[start : start + chunk] @ text_emb.T
        caps = table[start : start + chunk]
        gt = sims.gather(1, caps.clamp(min=0)).masked_fill(caps < 0, float("-inf"))
        best_gt = gt.max(1, keepdim=True).values
        image_ranks[start : start + chunk] = (sims > best_gt).sum(1).cpu()
    return image_ranks, caption_ranks


def recall_at(ranks: torch.Tensor, k: int) -> float:
    return 100.0 * float((ranks < k).float().mean())


def retrieval_metrics(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image: torch.Tensor | np.ndarray,
    chunk: int = 256,
) -> dict[str, float]:
    image_ranks, caption_ranks = retrieval_ranks(image_emb, text_emb, caption_image, chunk)
    out = {f"IR@{k}": recall_at(caption_ranks, k) for k in KS}
    out.update({f"TR@{k}": recall_at(image_ranks, k) for k in KS})
    values = [out[m] for m in METRICS]
    out["mean"] = float(np.mean(values))
    out["rsum"] = float(np.sum(values))
    return out
