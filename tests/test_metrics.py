"""Retrieval metrics against a brute-force argsort reference and hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdd_bench.errors import MddError
from mdd_bench.evaluation.metrics import KS, METRICS, RankCounts, retrieval_counts, retrieval_metrics


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
    img_ref, txt_ref = retrieval_counts(images, texts, owner, chunk=10_000)
    for chunk in (1, 4, 29, 31):
        img_c, txt_c = retrieval_counts(images, texts, owner, chunk=chunk)
        for a, b in ((img_c, img_ref), (txt_c, txt_ref)):
            assert torch.equal(a.above, b.above) and torch.equal(a.tied, b.tied)
            assert torch.equal(a.gt_tied, b.gt_tied)
    assert img_ref.above.shape == (30,) and txt_ref.above.shape == (150,)


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
    img_c, txt_c = retrieval_counts(images, texts, owner)
    assert txt_c.above.tolist() == [0, 1, 0, 0]  # caption 1 ranks image 1 above its own image 0
    # Image 1's own caption 2 ties with image 0's caption 1 (same vector): a tie, not a hit.
    assert img_c.above.tolist() == [0, 0, 0] and img_c.tied.tolist() == [0, 1, 0]
    out = retrieval_metrics(images, texts, owner)
    assert out["TR@1"] == pytest.approx(100 * 2.5 / 3) and out["IR@1"] == 75.0


def test_mean_and_rsum() -> None:
    owner = np.repeat(np.arange(15), 5)
    images, texts = random_case(15, owner, dim=6, seed=3, noise=1.5)
    out = retrieval_metrics(images, texts, owner)
    values = [out[m] for m in METRICS]
    assert set(out) == {*METRICS, "mean", "rsum"}
    assert out["mean"] == pytest.approx(sum(values) / 6) and out["rsum"] == pytest.approx(sum(values))
    assert all(isinstance(v, float) for v in out.values())
    assert len(set(values)) > 1


# ------------------------------------------------------------------------------------------------- ties


def monte_carlo(image_emb, text_emb, owner: np.ndarray, draws: int, seed: int) -> dict[str, float]:
    """Brute force with ties broken by a random key: the average hit rate over `draws` tie-breaks."""
    sims = (image_emb.double() @ text_emb.double().T).numpy()
    rng = np.random.default_rng(seed)
    n_img, n_txt = sims.shape
    hits = {m: 0.0 for m in METRICS}
    for _ in range(draws):
        key = rng.random(sims.shape)
        for j in range(n_txt):
            order = np.lexsort((key[:, j], -sims[:, j]))
            rank = int(np.where(order == owner[j])[0][0])
            for k in KS:
                hits[f"IR@{k}"] += rank < k
        for i in range(n_img):
            order = np.lexsort((key[i], -sims[i]))
            rank = min(int(np.where(order == j)[0][0]) for j in np.where(owner == i)[0])
            for k in KS:
                hits[f"TR@{k}"] += rank < k
    return {m: 100.0 * v / (draws * (n_txt if m.startswith("IR") else n_img)) for m, v in hits.items()}


def test_ties_match_random_tie_breaking() -> None:
    # Embeddings on a coarse integer grid: many exact ties, incl. duplicate captions of other images.
    rng = np.random.default_rng(5)
    owner = np.repeat(np.arange(14), 3)
    images = torch.from_numpy(rng.integers(0, 2, size=(14, 4)).astype(np.float32))
    texts = torch.from_numpy(rng.integers(0, 2, size=(42, 4)).astype(np.float32))
    got = retrieval_metrics(images, texts, owner, chunk=5)
    want = monte_carlo(images, texts, owner, draws=400, seed=0)
    for m in METRICS:
        assert got[m] == pytest.approx(want[m], abs=2.5), m  # 400 draws: sampling error < 1 point
    assert any(0 < got[m] < 100 for m in METRICS)


def test_hit_probability_against_enumeration() -> None:
    # Every ordering of t wrong and g correct tied items, after `above` wrong items strictly higher.
    import itertools

    for above, t, g in [(0, 3, 1), (1, 4, 2), (2, 2, 3), (0, 0, 1), (4, 6, 2), (9, 3, 1)]:
        counts = RankCounts(torch.tensor([above]), torch.tensor([t]), torch.tensor([g]))
        orders = list(set(itertools.permutations([0] * t + [1] * g)))
        for k in KS:
            hits = [above + order.index(1) < k for order in orders]
            assert float(counts.hit_probability(k)) == pytest.approx(np.mean(hits)), (above, t, g, k)


@pytest.mark.parametrize("collapse", ["equal", "zero"])
def test_collapsed_embeddings_score_chance(collapse: str) -> None:
    n_img = 50
    owner = np.repeat(np.arange(n_img), 5)
    if collapse == "equal":
        images, texts = torch.ones(n_img, 8), torch.ones(len(owner), 8)
    else:  # F.normalize of zero vectors is zero: every score is 0
        images = F.normalize(torch.zeros(n_img, 8), dim=1)
        texts = F.normalize(torch.zeros(len(owner), 8), dim=1)
    out = retrieval_metrics(images, texts, owner)
    for k in KS:
        assert out[f"IR@{k}"] == pytest.approx(100 * k / n_img)
        # TR: 5 correct of 250 tied captions; P(one in the top k) = 1 - C(245, k) / C(250, k).
        miss = np.prod([(245 - i) / (250 - i) for i in range(k)])
        assert out[f"TR@{k}"] == pytest.approx(100 * (1 - miss))
    assert out["mean"] < 15


def test_near_collapse_is_not_rescued() -> None:
    # A spread of 1e-7 around one vector: the ranking is noise, so recall stays near chance.
    g = torch.Generator().manual_seed(0)
    owner = np.repeat(np.arange(100), 5)
    images = torch.ones(100, 16) + 1e-7 * torch.randn(100, 16, generator=g)
    texts = torch.ones(500, 16) + 1e-7 * torch.randn(500, 16, generator=g)
    out = retrieval_metrics(F.normalize(images, dim=1), F.normalize(texts, dim=1), owner)
    assert out["IR@10"] < 25 and out["IR@1"] < 6


def test_duplicate_captions_of_different_images_share_the_hit() -> None:
    # Images 0 and 1 each have one caption, and the two captions are the same vector.
    images = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    out = retrieval_metrics(F.normalize(images, dim=1), texts, np.array([0, 1]))
    assert out["TR@1"] == pytest.approx(50.0)  # each image ties its own caption with the other's
    assert out["IR@1"] == pytest.approx(50.0)  # both captions rank image 0 first


@pytest.mark.parametrize("which", ["image", "text"])
def test_non_finite_embeddings_are_an_error(which: str) -> None:
    images, texts = torch.eye(4), torch.eye(4)
    (images if which == "image" else texts)[1, 2] = float("nan")
    with pytest.raises(MddError, match="NaN or inf"):
        retrieval_metrics(images, texts, np.arange(4))
