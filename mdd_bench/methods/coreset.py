"""Coreset baselines: N real (image, caption) training pairs chosen by a rule.

How MTT-VL adapted herding, k-center and forgetting to image-text pairs was never published (see
`mttvl_coreset.md` section 8); these follow that design note and state their choices:
- pool: the caption-level training pairs (each caption with its image), as MTT-VL's initialisation;
- features (herding, k-center): the full-data reference model's joint embedding of a pair,
  [normalised image feature ; normalised projected text feature];
- forgetting: per-pair correctness against a fixed gallery after every epoch of the reference run
  (both directions top-1), forgetting event = correct then incorrect; never-learned pairs rank first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mdd_bench.api import DistillContext, HParams, Method
from mdd_bench.artifacts.references import forgetting_counts
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import random_pairs
from mdd_bench.workspace.pairs import embed_images, embed_texts

FEATURES = ("joint", "image", "text")


@dataclass
class FeatureHParams(HParams):
    features: str = "joint"  # joint | image | text (ablations of the feature space)


def pair_features(ctx: DistillContext, which: str = "joint") -> torch.Tensor:
    """Features of every training pair in the reference model's shared space."""
    if which not in FEATURES:
        raise MddError(f"Unknown features '{which}'. Use one of: {', '.join(FEATURES)}.")
    model = ctx.reference_model()
    train = ctx.dataset.train
    images = embed_images(model, train, ctx.protocol)[torch.from_numpy(train.caption_image)]
    texts = embed_texts(model, ctx.text_embeddings("train"))
    return {"joint": lambda: torch.cat([images, texts], 1), "image": lambda: images, "text": lambda: texts}[
        which
    ]()


def herding(z: torch.Tensor, budget: int) -> list[int]:
    """Greedy herding (Welling 2009, DC-benchmark form): keep the running mean close to the pool mean.

    Step k picks argmin_i ||(k+1) mu - sum_{j in S} z_j - z_i|| over unchosen i; ties go to the lowest index.
    """
    z = z.double()
    mu = z.mean(0)
    total = torch.zeros_like(mu)
    taken = torch.zeros(len(z), dtype=torch.bool)
    chosen: list[int] = []
    for k in range(budget):
        dist = ((k + 1) * mu - total - z).pow(2).sum(1)
        dist[taken] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        taken[i] = True
        total += z[i]
    return chosen


def k_center(z: torch.Tensor, budget: int) -> tuple[list[int], float]:
    """Greedy k-center (Sener & Savarese 2018), first center nearest the pool mean; returns the radius."""
    z = z.double()
    first = int(torch.argmin((z - z.mean(0)).pow(2).sum(1)))
    dmin = (z - z[first]).pow(2).sum(1).sqrt()
    chosen = [first]
    for _ in range(budget - 1):
        i = int(torch.argmax(dmin))
        chosen.append(i)
        dmin = torch.minimum(dmin, (z - z[i]).pow(2).sum(1).sqrt())
    return chosen, float(dmin.max())


class RandomCoreset(Method):
    name = "random"
    family = "coreset"
    display_name = "Random"
    paper = "uniformly drawn real pairs (the baseline of every image-text distillation paper)"
    artifacts = ("text_features",)

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        return random_pairs(ctx.dataset, ctx.text_embeddings("train"), ctx.protocol, budget, ctx.seed)


class _FeatureCoreset(Method):
    deterministic = True  # greedy on fixed features: the seed changes nothing
    """A greedy selection on the reference model's pair features."""

    family = "coreset"
    artifacts = ("text_features", "reference_model")
    hparams_class = FeatureHParams

    def select(self, ctx: DistillContext, z: torch.Tensor, budget: int) -> list[int]:
        raise NotImplementedError

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        chosen = self.select(ctx, pair_features(ctx, self.hparams.features), budget)
        return ctx.coreset(chosen, method=self.name, features=self.hparams.features)


class HerdingCoreset(_FeatureCoreset):
    name = "herding"
    display_name = "Herding"
    paper = "Welling, Herding Dynamical Weights to Learn, ICML 2009"

    def select(self, ctx: DistillContext, z: torch.Tensor, budget: int) -> list[int]:
        return herding(z, budget)


class KCenterCoreset(_FeatureCoreset):
    name = "k-center"
    display_name = "K-Center"
    paper = "Sener & Savarese, Active Learning for CNNs: A Core-Set Approach, ICLR 2018"

    def select(self, ctx: DistillContext, z: torch.Tensor, budget: int) -> list[int]:
        chosen, radius = k_center(z, budget)
        ctx.stats.extra["coverage_radius"] = radius
        return chosen


class ForgettingCoreset(Method):
    name = "forgetting"
    family = "coreset"
    display_name = "Forgetting"
    paper = (
        "Toneva et al., An Empirical Study of Example Forgetting during Deep Neural Network Learning, "
        "ICLR 2019"
    )
    artifacts = ("text_features", "reference_model")

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        counts = forgetting_counts(ctx.reference().correctness())
        # Most-forgotten first (never learned = +inf); ties broken at random by the seed.
        order = np.lexsort((ctx.rng.random(len(counts)), -counts))
        chosen = order[:budget]
        finite = counts[chosen][np.isfinite(counts[chosen])]
        ctx.stats.extra["never_learned_chosen"] = int(np.isinf(counts[chosen]).sum())
        ctx.stats.extra["min_forgetting_chosen"] = float(finite.min()) if len(finite) else None
        return ctx.coreset(chosen, method=self.name)
