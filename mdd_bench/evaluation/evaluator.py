"""The yardstick: train fresh retrieval models on a DistilledSet and score them on the test split.

Two tracks. `hard`: identity targets, InfoNCE, the protocol's learning rates, extras ignored (data
quality alone). `native`: the method's own extras (learned similarity with its loss, learned step
sizes). Every result says which extras it used. Selection happens on val only; the reported number is
the final epoch on test (the references pick the best of many test evaluations; we do not).

What the fresh models train is the protocol's `[eval] towers`: the image encoder and the text head, or
two heads on the frozen image encoder. Learned step sizes are step sizes of the parameters the
distillation's student trained, so the native track uses them only when the protocol trains the same
ones (`DistilledSet.towers`); otherwise it keeps the protocol's learning rates (and its other extras) and
does not list `learned_lr`. (LoRS's learned NFNet step size says nothing about a fresh image head.)

Each (image encoder, text encoder) pair trains with its own recipe from the protocol (chosen on val by
`mdd-bench tune-eval`). Training depends only on the image encoder and the recipe (the distilled texts
live in the source text space), so one trained model is scored on every text encoder that shares its
recipe. Repetition seeds differ between splits: a choice made on val never reuses a test seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mdd_bench.data.pairs import PairDataset, random_indices
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.metrics import score
from mdd_bench.evaluation.training import Recipe, train_dual
from mdd_bench.models.dual import DualEncoder
from mdd_bench.protocol import Protocol
from mdd_bench.workspace import Workspace
from mdd_bench.workspace.pairs import RealPairs, TensorPairs

TRACKS = ("hard", "native")
# Repetition r of distillation seed s trains with seed s * 1000 + offset + r.
SEED_OFFSETS = {"test": 0, "val": 500}


def repetition_seeds(seed: int, repetitions: int, split: str, first: int = 0) -> list[int]:
    """Seeds of repetitions first .. first + repetitions - 1 (the same at every call: paired scores)."""
    if split not in SEED_OFFSETS:
        raise MddError(f"Unknown split '{split}'. Use one of: {', '.join(SEED_OFFSETS)}.")
    return [seed * 1000 + SEED_OFFSETS[split] + r for r in range(first, first + repetitions)]


def sample_std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof=1); None for a single value, where it is undefined."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


@dataclass
class ArchResult:
    image_encoder: str
    text_encoder: str
    seeds: list[int]
    runs: list[dict[str, float]]
    source: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in self.runs])) for k in self.runs[0]}

    @property
    def std(self) -> dict[str, float | None]:
        return {k: sample_std([r[k] for r in self.runs]) for k in self.runs[0]}

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), mean=self.mean, std=self.std)


@dataclass
class EvalResult:
    track: str
    split: str
    extras_used: list[str]
    recipe: dict[str, Any]
    archs: list[ArchResult] = field(default_factory=list)

    def source(self) -> ArchResult:
        return next(a for a in self.archs if a.source)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["archs"] = [a.to_dict() for a in self.archs]
        return out


def arch_grid(protocol: Protocol, archs: str) -> list[tuple[str, str]]:
    """(image encoder, text encoder) pairs; the source pair first."""
    if archs not in ("source", "all"):
        raise MddError(f"Unknown --archs '{archs}'. Use 'source' or 'all'.")
    images = [protocol.image.source] + (list(protocol.image.unseen) if archs == "all" else [])
    texts = [protocol.text.source] + (list(protocol.text.unseen) if archs == "all" else [])
    return [(i, t) for t in texts for i in images]


class Evaluator:
    """Evaluates distilled sets of one dataset under one protocol, on the workspace's device."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.protocol = workspace.protocol
        self.dataset = workspace.dataset
        self.progress = workspace.progress

    def text_embeddings(self, split: str, encoder: str | None = None) -> np.ndarray:
        return self.workspace.text_embeddings(split, encoder)

    # ------------------------------------------------------------------ pieces

    def recipe_for(
        self, distilled: DistilledSet, track: str, image: str | None = None, text: str | None = None
    ) -> tuple[Recipe, list[str]]:
        """The encoder pair's recipe (the source pair by default) and the extras the track uses.

        The hard track is the protocol's recipe for every set. The native track adds the set's learned
        step sizes, similarity and loss, and its method's reference setting of DSA (provenance
        `eval_dsa`; listed as `dsa:on` / `dsa:off` where it differs from the pair's recipe).
        """
        if track not in TRACKS:
            raise MddError(f"Unknown track '{track}'. Use one of: {', '.join(TRACKS)}.")
        recipe = Recipe.from_eval(self.protocol, image, text)
        used: list[str] = []
        if track == "native":
            lrs = distilled.learned_lrs()
            if lrs is not None and distilled.towers == self.protocol.eval.towers:
                recipe = Recipe.from_eval(self.protocol, image, text, lr_img=lrs[0], lr_txt=lrs[1])
                used.append("learned_lr")
            if distilled.similarity() is not None:
                used.append("similarity")
            loss = distilled.provenance.get("eval_loss", "infonce")
            if loss != "infonce":
                recipe = Recipe(**{**asdict(recipe), "loss": loss})
                used.append(f"loss:{loss}")
            # The method's reference evaluation on DSA (`Method.native_dsa`); None: the pair's recipe.
            dsa = distilled.provenance.get("eval_dsa")
            if dsa is not None and bool(dsa) != recipe.dsa:
                recipe = Recipe(**{**asdict(recipe), "dsa": bool(dsa)})
                used.append("dsa:on" if dsa else "dsa:off")
        return recipe, used

    def native_is_hard(self, distilled: DistilledSet, archs: str = "source") -> bool:
        """Whether the native track trains exactly as the hard one on every encoder pair of `archs`'s
        grid: no extras, no loss and no DSA setting of the set's own, so its native numbers are the hard
        ones."""
        if distilled.extras or distilled.provenance.get("eval_loss", "infonce") != "infonce":
            return False
        return all(
            self.recipe_for(distilled, "native", i, t) == self.recipe_for(distilled, "hard", i, t)
            for i, t in arch_grid(self.protocol, archs)
        )

    def score(self, model: DualEncoder, split: str, text_encoder: str | None = None) -> dict[str, float]:
        return score(self.workspace, model, split, text_encoder)

    def train_on(
        self,
        distilled: DistilledSet,
        image_encoder: str,
        seed: int,
        track: str = "hard",
        text_encoder: str | None = None,
    ) -> DualEncoder:
        recipe, used = self.recipe_for(distilled, track, image_encoder, text_encoder)
        similarity = distilled.similarity() if "similarity" in used else None
        return self.train_with(distilled, image_encoder, recipe, seed, similarity)

    def train_with(
        self,
        distilled: DistilledSet,
        image_encoder: str,
        recipe: Recipe,
        seed: int,
        similarity: torch.Tensor | None = None,
    ) -> DualEncoder:
        """A fresh pretrained model (the protocol's towers) trained on `distilled` with exactly `recipe`."""
        model = self.workspace.fresh_model(
            seed, image_encoder, text_dim=distilled.texts.shape[1], towers=self.protocol.eval.towers
        )
        source = TensorPairs(distilled.images.detach(), distilled.texts.detach())
        return train_dual(model, source, recipe, seed, similarity, desc=f"eval {image_encoder}")

    def pairs_of(self, archs: str, pairs: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
        """`pairs` when given (each checked against the protocol's full grid), else `archs`'s grid.

        A subset lets a finished `--archs source` cell gain its missing pairs without re-evaluating the
        ones it has: each pair trains and scores exactly as in a full evaluation (same seeds, recipe).
        """
        if pairs is None:
            return arch_grid(self.protocol, archs)
        grid = arch_grid(self.protocol, "all")
        for pair in pairs:
            if tuple(pair) not in grid:
                raise MddError(
                    f"Encoder pair {pair[0]} x {pair[1]} is not in the grid of protocol "
                    f"'{self.protocol.name}': {', '.join(f'{i} x {t}' for i, t in grid)}."
                )
        return [(str(i), str(t)) for i, t in dict.fromkeys(tuple(p) for p in pairs)]

    def pair_groups(
        self, distilled: DistilledSet, archs: str, track: str, pairs: list[tuple[str, str]] | None = None
    ) -> list[tuple[str, list[str]]]:
        """(image encoder, text encoders) groups that train identically and so share trained models."""
        groups: dict[tuple[str, str], list[str]] = {}
        for image, text in self.pairs_of(archs, pairs):
            recipe, _ = self.recipe_for(distilled, track, image, text)
            groups.setdefault((image, repr(recipe)), []).append(text)
        return [(image, texts) for (image, _), texts in groups.items()]

    # ------------------------------------------------------------------ front door

    def evaluate(
        self,
        distilled: DistilledSet,
        archs: str = "source",
        track: str = "hard",
        repetitions: int | None = None,
        seed: int = 0,
        split: str = "test",
        pairs: list[tuple[str, str]] | None = None,
        first_repetition: int = 0,
    ) -> EvalResult:
        """Train `repetitions` fresh models per architecture pair and score each on `split`.

        `pairs` (image encoder, text encoder) evaluates only those pairs of the protocol's full grid, in
        that order, instead of `archs`'s grid; the result's `recipe` and `extras_used` stay the source
        pair's, as in a full evaluation. `first_repetition` skips the first repetitions' seeds (a
        re-score adds runs to the ones a check already has).
        """
        self._check_compatible(distilled)
        reps = repetitions or self.protocol.eval.repetitions
        recipe, used = self.recipe_for(distilled, track)
        result = EvalResult(track, split, used, asdict(recipe))
        grid = self.pairs_of(archs, pairs)
        for _, text_encoder in grid:
            self._check_text_dim(distilled, text_encoder, split)
        seeds = repetition_seeds(seed, reps, split, first_repetition)
        source = (self.protocol.image.source, self.protocol.text.source)
        found: dict[tuple[str, str], ArchResult] = {}
        groups = self.pair_groups(distilled, archs, track, grid)
        # The evaluate stage's bar (test only: val evaluations run inside a distillation's own bar).
        bar = tqdm(total=len(groups) * len(seeds), desc=f"evaluate {track}", unit="model", leave=False,
                   disable=not self.progress or split != "test")  # fmt: skip
        for image_encoder, text_encoders in groups:
            runs: dict[str, list[dict[str, float]]] = {t: [] for t in text_encoders}
            for s in seeds:
                model = self.train_on(distilled, image_encoder, s, track, text_encoders[0])
                for text_encoder in text_encoders:
                    runs[text_encoder].append(self.score(model, split, text_encoder))
                bar.update(1)
            for text_encoder in text_encoders:
                pair_recipe, _ = self.recipe_for(distilled, track, image_encoder, text_encoder)
                found[(image_encoder, text_encoder)] = ArchResult(
                    image_encoder, text_encoder, seeds, runs[text_encoder],
                    (image_encoder, text_encoder) == source, asdict(pair_recipe),
                )  # fmt: skip
        bar.close()
        result.archs = [found[pair] for pair in grid]
        return result

    def _check_compatible(self, distilled: DistilledSet) -> None:
        res = self.protocol.data.resolution
        if tuple(distilled.images.shape[1:]) != (3, res, res):
            raise MddError(
                f"Distilled images are {tuple(distilled.images.shape[1:])} but protocol "
                f"'{self.protocol.name}' uses 3x{res}x{res}. Evaluate under the protocol it was made for."
            )

    def _check_text_dim(self, distilled: DistilledSet, text_encoder: str, split: str) -> None:
        dim = self.text_embeddings(split, text_encoder).shape[1]
        if dim != distilled.texts.shape[1]:
            raise MddError(
                f"Text encoder '{text_encoder}' gives {dim}-d embeddings but the distilled texts are "
                f"{distilled.texts.shape[1]}-d. Cross-architecture text encoders must share the "
                "source encoder's dimension."
            )


def check_budget(dataset: PairDataset, budget: int) -> None:
    check_pairs(budget, dataset.train.num_captions, dataset.name)


def check_pairs(budget: int, pairs: int, dataset: str) -> None:
    """A budget a dataset's training pairs cannot fill (also asked before a grid starts)."""
    if budget > pairs:
        raise MddError(
            f"Budget {budget} is larger than the {pairs} training pairs of {dataset}. "
            "Use a smaller --budgets value."
        )


def random_pairs(
    dataset: PairDataset, text_emb: np.ndarray, protocol: Protocol, budget: int, seed: int
) -> DistilledSet:
    """N real training pairs drawn uniformly without replacement: the weakest sensible baseline.

    The draw is `random_indices`, the same as a method initialised from random pairs at `seed`.
    """
    check_budget(dataset, budget)
    idx = random_indices(dataset.train.num_captions, budget, seed)
    images, texts = RealPairs(dataset.train, text_emb, protocol).batch(torch.from_numpy(idx))
    provenance = {"method": "random", "budget": budget, "seed": seed, "real_indices": idx.tolist()}
    return DistilledSet(images, texts, {}, provenance)
