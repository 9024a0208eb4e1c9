"""Initial synthetic pairs: K-means on pair features and the variants MDM's ablation compares.

K-means runs on faiss (`faiss.Kmeans(spherical=True)`), the cosine K-means of the reference
(`fast_pytorch_kmeans` in cosine mode: centroids renormalised, assignment by inner product). Why
faiss: it is a kept library with CPU and GPU builds, multi-threaded BLAS assignment, seeded, and it
trains on at most `max_points_per_centroid` (256) points per centroid, so COCO (~567k pairs x 4608-d,
K = 500) trains on a 128k sample instead of all pairs; the final assignment still covers every pair.
The measured time at that size is in `benchmarks/bench_kmeans.py`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from mdd_bench.data.pairs import random_indices
from mdd_bench.errors import MddError
from mdd_bench.workspace.pairs import embed_images, embed_texts

# noise: Gaussian pixels/texts with the training data's per-channel statistics; random: N random
# pairs (the `random` cell's draw of the same seed); image / text / joint: K-means on that feature of
# every training pair (joint is MDM's).
DATA_INITS = ("joint", "image", "text", "random", "noise")
FEATURES = ("joint", "image", "text")
BLOCK = 65_536  # rows per block when scanning the features


@torch.no_grad()
def pair_features(model, workspace, which: str = "joint") -> np.ndarray:
    """Unit features of every training pair under `model` (caption-level pairs, unaugmented images).

    joint = normalise([normalise(image feature); normalise(projected text feature)]).
    """
    if which not in FEATURES:
        raise MddError(f"Unknown pair feature '{which}'. Use one of: {', '.join(FEATURES)}.")
    train = workspace.dataset.train
    images = embed_images(model, train, workspace.protocol)[torch.from_numpy(train.caption_image)]
    texts = embed_texts(model, workspace.text_embeddings("train"))
    if which == "image":
        out = images
    elif which == "text":
        out = texts
    else:
        out = F.normalize(torch.cat([images, texts], 1), dim=1)
    return out.float().cpu().numpy()


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre drawn with probability
    proportional to the squared distance to the nearest centre so far.

    Distances come from one matrix-vector product per centre, ||x||^2 + ||c||^2 - 2 x.c (clipped at 0),
    not from (x - c)^2: no n x d temporary per centre, and the product runs on multi-threaded BLAS. At
    COCO's sample size (128k x 4608) this is the difference between minutes and over an hour.
    """
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)

    def dist2(i: int) -> np.ndarray:
        return np.maximum(sq + sq[i] - 2.0 * (x @ x[i]), 0.0)

    centres = [int(rng.integers(n))]
    d2 = dist2(centres[0])
    for _ in range(1, k):
        total = float(d2.sum(dtype=np.float64))
        i = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(i)
        np.minimum(d2, dist2(i), out=d2)
    return x[centres]


def kmeans_nearest(
    features: np.ndarray,
    k: int,
    seed: int,
    iterations: int = 100,
    seeding: str = "k-means++",
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """Cosine K-means with K = k; per cluster, the member nearest its (normalised) centroid.

    Seeding is k-means++ on the points faiss trains on (the reference starts from k random points,
    `seeding="random"`: on 6 separable clusters that leaves two centroids in one cluster about 98% of
    the time, and Lloyd's iterations never move them out). An empty cluster takes the not-yet-chosen
    pair nearest its centroid, so the k indices are always distinct. Ties go to the lowest index.
    `timings`, when given, receives the seconds of each stage (seeding, train, assign).
    """
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    n, d = x.shape
    if not 1 <= k <= n:
        raise MddError(f"K-means with K={k} needs between 1 and {n} (the number of pairs) clusters.")
    # Row norms in blocks and no normalised copy of x: at COCO size (567k x 4608, 9.7 GiB) a copy or a
    # full-size temporary would not fit beside the features in 24 GiB.
    norms = np.empty(n, dtype=np.float32)
    for s in range(0, n, BLOCK):
        block = x[s : s + BLOCK]
        if not np.isfinite(block).all():
            raise MddError("K-means features contain NaN or inf: the feature model is broken.")
        norms[s : s + BLOCK] = np.maximum(np.linalg.norm(block, axis=1), 1e-12)
    km = faiss.Kmeans(d, k, niter=iterations, spherical=True, seed=seed, verbose=False)
    rng = np.random.default_rng([seed, 99])
    limit = km.cp.max_points_per_centroid * k
    # faiss trains on at most `limit` points anyway: train (and seed) on a normalised sample of that size.
    rows = np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)
    sample = x[rows] / norms[rows, None]
    clock = time.perf_counter()
    if seeding == "k-means++":
        init = kmeans_plus_plus(sample, k, rng)
    elif seeding == "random":
        init = None  # faiss draws k random training points
    else:
        raise MddError(f"Unknown K-means seeding '{seeding}'. Use k-means++ or random.")
    seeded = time.perf_counter()
    km.train(sample, init_centroids=init)
    trained = time.perf_counter()
    centroids = km.centroids / np.maximum(np.linalg.norm(km.centroids, axis=1, keepdims=True), 1e-12)
    cos = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, BLOCK):
        cos[s : s + BLOCK] = (x[s : s + BLOCK] / norms[s : s + BLOCK, None]) @ centroids.T
    assign = cos.argmax(1)
    chosen = np.full(k, -1, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(assign == c)
        if len(members):
            chosen[c] = members[np.argmax(cos[members, c])]  # argmax: lowest index among ties
    taken = np.zeros(n, dtype=bool)
    taken[chosen[chosen >= 0]] = True
    for c in np.flatnonzero(chosen < 0):
        score = np.where(taken, -np.inf, cos[:, c])
        chosen[c] = int(np.argmax(score))
        taken[chosen[c]] = True
    if timings is not None:
        timings.update(seeding=seeded - clock, train=trained - seeded, assign=time.perf_counter() - trained)
    return chosen


def noise_pairs(workspace, budget: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian pixels and texts with the training data's statistics (the reference hard-codes
    Flickr's CLIP-normalised means; computing them keeps the variant meaningful on any dataset)."""
    real = workspace.real_pairs("train")
    idx = torch.arange(min(len(real), 2048))
    images, texts = real.batch(idx)
    res = images.shape[-1]
    mean_c, std_c = images.mean((0, 2, 3)), images.std((0, 2, 3))
    pixels = torch.randn(budget, 3, res, res, generator=generator) * std_c.view(1, 3, 1, 1)
    pixels = pixels + mean_c.view(1, 3, 1, 1)
    words = torch.randn(budget, texts.shape[1], generator=generator) * texts.std() + texts.mean()
    return pixels, words


def initial_pairs(
    workspace,
    budget: int,
    how: str,
    seed: int,
    feature_model=None,
    kmeans_iterations: int = 100,
) -> tuple[torch.Tensor, torch.Tensor, list[int] | None]:
    """(images, texts, chosen pair indices or None) of an initial synthetic set, on the CPU."""
    if how not in DATA_INITS:
        raise MddError(f"Unknown data init '{how}'. Use one of: {', '.join(DATA_INITS)}.")
    real = workspace.real_pairs("train")
    if budget > len(real):
        raise MddError(f"Budget {budget} exceeds the {len(real)} training pairs. Use a smaller budget.")
    generator = torch.Generator().manual_seed(seed)
    if how == "noise":
        images, texts = noise_pairs(workspace, budget, generator)
        return images, texts, None
    if how == "random":
        # The `random` cell's draw of this seed (`data.pairs.random_indices`): the paired baseline.
        idx = torch.from_numpy(random_indices(len(real), budget, seed))
    else:
        if feature_model is None:
            raise MddError(f"Data init '{how}' needs a feature model.")
        features = pair_features(feature_model, workspace, how)
        idx = torch.from_numpy(kmeans_nearest(features, budget, seed, kmeans_iterations))
    images, texts = real.batch(idx)
    return images, texts, idx.tolist()
