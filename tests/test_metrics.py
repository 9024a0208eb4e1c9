"""Retrieval metrics against a brute-force argsort reference and hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdd_bench.metrics import KS, METRICS, retrieval_metrics, retrieval_ranks


def brute_force(image_emb: torch.Tensor, text_emb: torch.Tensor, owner: np.ndarray) -> dict[str, float]:
    """Full similarity matrix, a full sort per query, position of the (best) ground truth."""
    sims = (image_emb.double() @ text_emb.double().T).numpy()  # images x captions
    n_img, n_txt = sims.shape
    tr_ranks = []
    for i in range(n_img):
        order = list(np.argsort(-sims[i], kind="stable"))
        tr_ranks.append(min(order.index(j) for j in range(n_txt) if owner[j] == i))
    ir_ranks = []
    for j in range(n_txt):
        order = list(np.argsort(-sims[:, j], kind="stable"))
        ir_ranks.append(order.index(owner[j]))
    out = {}
    for k in KS:
        out[f"IR@{k}"] = 100.0 * np.mean(np.array(ir_ranks) < k)
        out[f"TR@{k}"] = 100.0 * np.mean(np.array(tr_ranks) < k)
    return out


def random_case(n_img: int, owner: np.ndarray, dim: int, seed: int, noise: float):
    g = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(n_img, dim, generator=g), dim=1)
    # Captions near their image, so ranks spread over 0..n rather than being all large.
    texts = images[torch.as_tensor(owner)] + noise * torch.randn(len(owner), dim, generator=g)
    return images, F.normalize(texts, dim=1)


@pytest.mark.parametrize("chunk", [1, 7, 64, 512])
def test_matches_brute_force_five_captions(chunk: int) -> None:
    owner = np.repeat(np.arange(37), 5)
    images, texts = random_case(37, owner, dim=16, seed=0, noise=0.9)
    got = retrieval_metrics(images, texts, owner, chunk=chunk)
    want = brute_force(images, texts, owner)
    for m in METRICS:
        assert got[m] == pytest.approx(want[m], abs=1e-4), m  # a rank error moves it >= 100/n
    # The case is not degenerate: some recalls are neither 0 nor 100.
    assert any(0 < want[m] < 100 for m in METRICS)


@pytest.mark.parametrize("chunk", [3, 7, 1000])
def test_matches_brute_force_uneven_captions(chunk: int) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 7, size=23)
    owner = rng.permutation(np.repeat(np.arange(23), counts))  # captions not grouped by image
    images, texts = random_case(23, owner, dim=8, seed=1, noise=1.2)
    got = retrieval_metrics(images, torch.as_tensor(texts), torch.as_tensor(owner), chunk=chunk)
    want = brute_force(images, texts, owner)
    for m in METRICS:
        assert got[m] == pytest.approx(want[m], abs=1e-4), m  # a rank error moves it >= 100/n
    assert any(0 < want[m] < 100 for m in METRICS)


def test_chunking_does_not_change_ranks() -> None:
    owner = np.repeat(np.arange(30), 5)
    images, texts = random_case(30, owner, dim=12, seed=2, noise=1.0)
    img_ref, txt_ref = retrieval_ranks(images, texts, owner, chunk=10_000)
    for chunk in (1, 4, 29, 31):
        img_ranks, txt_ranks = retrieval_ranks(images, texts, owner, chunk=chunk)
        assert torch.equal(img_ranks, img_ref) and torch.equal(txt_ranks, txt_ref)
    assert img_ref.shape == (30,) and txt_ref.shape == (150,)


def test_perfect_embeddings_give_100() -> None:
    owner = np.repeat(np.arange(12), 5)
    images = torch.eye(12, 16)
    texts = images[torch.as_tensor(owner)]
    out = retrieval_metrics(images, texts, owner, chunk=5)
    assert all(out[m] == 100.0 for m in METRICS)
    assert out["mean"] == 100.0 and out["rsum"] == 600.0


def test_known_permutation() -> None:
    # Caption j matches image perm[j] best, its own image j second: rank 0 where perm[j] == j, else 1.
    n = 20
    perm = np.arange(n)
    perm[:8] = np.roll(perm[:8], 1)  # 8 captions point at a neighbour, 12 are fixed points
    images = torch.eye(n)
    texts = 2 * images[torch.as_tensor(perm)] + images
    out = retrieval_metrics(images, texts, np.arange(n), chunk=6)
    assert out["IR@1"] == pytest.approx(60.0) and out["TR@1"] == pytest.approx(60.0)
    assert out["IR@5"] == out["IR@10"] == out["TR@5"] == out["TR@10"] == 100.0
    assert out["mean"] == pytest.approx((60 + 100 + 100) / 3)


@pytest.mark.parametrize("rank", [0, 1, 4, 5, 9, 10, 11])
def test_known_rank_at_the_k_boundaries(rank: int) -> None:
    # One caption per image; caption j scores `rank` distractor images (j+1 .. j+rank) above its own,
    # and by symmetry each image has `rank` captions scored above its own: every rank equals `rank`.
    n = 12
    scores = torch.zeros(n, n)  # captions x images
    for j in range(n):
        scores[j, j] = 0.5
        for d in range(1, rank + 1):
            scores[j, (j + d) % n] = 1.0
    out = retrieval_metrics(torch.eye(n), scores, np.arange(n), chunk=5)
    for k in KS:
        expected = 100.0 if rank < k else 0.0
        assert out[f"IR@{k}"] == expected and out[f"TR@{k}"] == expected, (k, out)


def test_best_caption_counts_for_text_retrieval() -> None:
    # Image 0 has a perfect caption and a useless one: TR uses the best, IR scores each caption.
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    owner = np.array([0, 0, 1, 2])
    ranks_img, ranks_txt = retrieval_ranks(images, texts, owner)
    assert ranks_img.tolist() == [0, 0, 0]
    assert ranks_txt.tolist() == [0, 1, 0, 0]  # caption 1 ranks image 1 above its own image 0
    out = retrieval_metrics(images, texts, owner)
    assert out["TR@1"] == 100.0 and out["IR@1"] == 75.0


def test_mean_and_rsum() -> None:
    owner = np.repeat(np.arange(15), 5)
    images, texts = random_case(15, owner, dim=6, seed=3, noise=1.5)
    out = retrieval_metrics(images, texts, owner)
    values = [out[m] for m in METRICS]
    assert set(out) == {*METRICS, "mean", "rsum"}
    assert out["mean"] == pytest.approx(sum(values) / 6) and out["rsum"] == pytest.approx(sum(values))
    assert all(isinstance(v, float) for v in out.values())
    assert len(set(values)) > 1
