"""The native track's random baseline: N random real pairs trained the way a set's native track trains.

DD-Ranking's point, for retrieval: a learned soft target or learned step sizes can lift even random data,
so a set's native recall says little until it is set against random pairs given the same kind of help.
The baseline copies the set's learned lrs and loss; a learned similarity cannot be copied (it belongs
to the set's own pairs), so the random pairs get one from the full-data reference model, the teacher a
soft target stands for: S = (softmax_rows(Z) + softmax_cols(Z)) / 2 over the reference model's logits Z
between the N images and N captions. S is the identity where the teacher is sure and carries the
identity's mass N (each row of one softmax, each column of the other sums to one), so soft InfoNCE
reads its rows as near-distributions; its entries lie in [0, 1], so WBCE reads them as probabilities
(a confident diagonal is a positive above 1/2).
"""

from __future__ import annotations

import torch

from mdd_bench.api import DistillContext
from mdd_bench.distilled import DistilledSet
from mdd_bench.evaluation.evaluator import random_pairs
from mdd_bench.models.dual import DualEncoder
from mdd_bench.record import RandomBaseline

SIMILARITY_FROM = "full-data reference model"


def soft_targets(logits: torch.Tensor) -> torch.Tensor:
    """(softmax over each row + softmax over each column) / 2 of an N x N image-text logit matrix."""
    logits = logits.double()
    return ((logits.softmax(dim=1) + logits.softmax(dim=0)) / 2).float()


@torch.no_grad()
def reference_similarity(model: DualEncoder, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """The reference model's soft targets for pairs (images[i], texts[i]); on the CPU, like a set's extras."""
    model.eval()
    device = next(model.parameters()).device
    image_emb = torch.cat([model.encode_images(b.to(device)) for b in images.split(256)])
    text_emb = torch.cat([model.encode_texts(b.to(device)) for b in texts.split(1024)])
    return soft_targets(model.logit_scale * image_emb @ text_emb.T).cpu()


def native_extras(ctx: DistillContext, distilled: DistilledSet) -> list[str]:
    """What the set's native track uses (learned_lr, similarity, loss:..., dsa:...); empty: native is hard."""
    return ctx.evaluator.recipe_for(distilled, "native")[1]


def random_like(ctx: DistillContext, distilled: DistilledSet, seed: int) -> DistilledSet | None:
    """Random real pairs (the `random` cell's draw for `seed`) with the set's kind of native extras, or
    None when the set's native track uses none (its baseline is then the `random` cells themselves)."""
    used = native_extras(ctx, distilled)
    if not used:
        return None
    pairs = random_pairs(ctx.dataset, ctx.text_embeddings("train"), ctx.protocol, distilled.size, seed)
    extras: dict[str, torch.Tensor] = {}
    if "learned_lr" in used:
        extras["lr_img"], extras["lr_txt"] = distilled.extras["lr_img"], distilled.extras["lr_txt"]
    if "similarity" in used:
        extras["similarity"] = reference_similarity(ctx.reference_model(), pairs.images, pairs.texts)
    provenance = dict(pairs.provenance, baseline_of=distilled.provenance.get("method"))
    if "learned_lr" in used:  # the lrs are step sizes of these towers' parameters, so they go with them
        provenance["towers"] = distilled.towers
    for key in ("eval_loss", "eval_dsa"):  # trained the way the set's native track trains
        if key in distilled.provenance:
            provenance[key] = distilled.provenance[key]
    return DistilledSet(pairs.images, pairs.texts, extras, provenance)


def native_random_baseline(
    ctx: DistillContext, distilled: DistilledSet, archs: str, repetitions: int | None, seed: int
) -> RandomBaseline | None:
    """Evaluate `random_like` on the native track with the set's repetition seeds (test split)."""
    baseline = random_like(ctx, distilled, seed)
    if baseline is None:
        return None
    result = ctx.evaluator.evaluate(baseline, archs, "native", repetitions, seed=seed, split="test")
    wanted = native_extras(ctx, distilled)
    if sorted(result.extras_used) != sorted(wanted):  # a bug here would make IOR compare unlike things
        raise RuntimeError(f"random baseline used {result.extras_used}, the set {wanted}")
    out = result.to_dict()
    return RandomBaseline(
        pairs_seed=seed,
        similarity_from=SIMILARITY_FROM if "similarity" in wanted else None,
        extras_used=out["extras_used"],
        recipe=out["recipe"],
        archs=out["archs"],
    )
