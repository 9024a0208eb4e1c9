"""`mdd-bench tune-eval`: choose each encoder pair's evaluation recipe on val, knowing no method.

The procedure (documented in docs/evaluation.md, reproduced by the command):
1. Tuning sets: N random real training pairs at each protocol budget, drawn with seeds of their own
   (TUNE_SEED + s), never a method's output.
2. Stage 1: every candidate (lr_img x lr_txt x dsa) trains on the smallest budget's sets with `seeds`
   seeds per image encoder; each trained model is scored on the **val** split with every text encoder
   (training does not depend on the text encoder). Per pair, the `top` candidates by mean val recall
   go on.
3. Stage 2: those candidates train at every budget (`seeds` seeds); the score of a candidate is its val
   mean recall averaged over budgets.
4. Stability: the best-scoring candidate trains at the smallest budget with `stability_seeds` seeds; it is
   kept when no seed falls below half the median, else the next candidate is checked.
5. Full data (optional): the full-data run trains about 100x more steps than a 100-pair set, so its
   image lr is chosen on its own: one run per `full_lrs_img` value and image encoder (source text
   encoder), scored on val; the best is the pair's `full_lr_img`.
6. Real-image augmentation (with 5): the source encoder's full-data run at its chosen lr trains once
   without and once with `real_augment`, both scored on val; the better one is the protocol's
   `real_augment` for the full-data run and the experts (both train on every real pair).
Finished trainings are kept in a resumable JSON log, so an interrupted tuning resumes.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdd_bench.cache import atomic_write_json, cache_dir, stable_hash
from mdd_bench.data.pairs import PairDataset
from mdd_bench.evaluation.evaluator import Evaluator, arch_grid, random_pairs
from mdd_bench.evaluation.metrics import score
from mdd_bench.evaluation.training import Recipe
from mdd_bench.protocol import Protocol
from mdd_bench.workspace import Workspace

TUNE_SEED = 7000  # tuning sets and repetitions draw from seeds no method cell uses (cells use 0, 1, 2...)


@dataclass(frozen=True)
class Candidate:
    lr_img: float
    lr_txt: float
    dsa: bool

    @property
    def key(self) -> str:
        return f"lr_img={self.lr_img:g} lr_txt={self.lr_txt:g} dsa={str(self.dsa).lower()}"


@dataclass
class TuneConfig:
    lrs_img: tuple[float, ...] = (0.1, 0.03, 0.01, 0.003)
    lrs_txt: tuple[float, ...] = (0.1, 0.01)
    dsa: tuple[bool, ...] = (False, True)
    archs: str = "all"
    seeds: int = 2
    top: int = 2
    stability_seeds: int = 10
    budgets: tuple[int, ...] | None = None  # default: the protocol's
    full_lrs_img: tuple[float, ...] = (0.1, 0.03, 0.01, 0.003)

    def candidates(self) -> list[Candidate]:
        return [Candidate(*c) for c in itertools.product(self.lrs_img, self.lrs_txt, self.dsa)]


@dataclass
class PairChoice:
    image: str
    text: str
    chosen: Candidate | None
    val_by_budget: dict[int, float]
    stability: list[float]
    stable: bool
    ranking: list[tuple[str, float]]  # stage-2 candidates by score


class TuneLog:
    """Val scores of finished trainings, keyed by (image, candidate, budget, seed); saved after each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def key(image: str, cand: Candidate, budget: int, seed: int) -> str:
        return f"{image}|{cand.key}|b{budget}|s{seed}"

    def get(self, *key: Any) -> dict[str, float] | None:
        return self.entries.get(self.key(*key))

    def put(self, scores: dict[str, float], *key: Any) -> None:
        self.entries[self.key(*key)] = scores
        atomic_write_json(self.path, self.entries)


class Tuner:
    def __init__(
        self, protocol: Protocol, dataset: PairDataset, config: TuneConfig, log=print, device: str = "cpu"
    ) -> None:
        self.protocol, self.dataset, self.config, self.say = protocol, dataset, config, log
        self.workspace = Workspace(protocol, dataset, device, progress=False)
        self.evaluator = Evaluator(self.workspace)
        self.budgets = tuple(config.budgets or protocol.budgets)
        self.pairs = arch_grid(protocol, config.archs)
        settings = {k: v for k, v in protocol.to_dict().items() if k in ("data", "image", "text", "model")}
        # Entries are per image encoder and name their text encoders, so the lists of encoders are not
        # part of the key: adding an encoder to the protocol reuses every finished training.
        settings["image"] = {k: v for k, v in settings["image"].items() if k != "unseen"}
        settings["text"] = {k: v for k, v in settings["text"].items() if k != "unseen"}
        # The log outlives a tuning: what it chooses (and how often a result is repeated) is not in its key.
        chosen = (
            "recipes",
            "lr_img",
            "lr_txt",
            "dsa",
            "real_augment",
            "repetitions",
            "full_data_repetitions",
        )
        ev = {k: v for k, v in protocol.to_dict()["eval"].items() if k not in chosen}
        key = stable_hash([settings, ev, dataset.fingerprint(), TUNE_SEED])
        self.log = TuneLog(cache_dir("tuning") / f"{protocol.name}-{dataset.name}-{key}.json")
        self._sets: dict[tuple[int, int], Any] = {}

    def tuning_set(self, budget: int, seed: int):
        if (budget, seed) not in self._sets:
            emb = self.evaluator.text_embeddings("train")
            self._sets[(budget, seed)] = random_pairs(
                self.dataset, emb, self.protocol, budget, TUNE_SEED + seed
            )
        return self._sets[(budget, seed)]

    def scores(self, image: str, cand: Candidate, budget: int, seed: int) -> dict[str, float]:
        """Val mean recall per text encoder of one training (from the log when already done)."""
        texts = [t for i, t in self.pairs if i == image]
        done = self.log.get(image, cand, budget, seed)
        if done is not None and all(t in done for t in texts):
            return done
        recipe = Recipe.from_eval(self.protocol, image, texts[0], **asdict(cand))
        distilled = self.tuning_set(budget, seed)
        model = self.evaluator.train_with(distilled, image, recipe, seed=(TUNE_SEED + seed) * 1000 + 500)
        out = {t: self.evaluator.score(model, "val", t)["mean"] for t in texts}
        self.log.put(out, image, cand, budget, seed)
        self.say(f"  {image:<14} {cand.key:<34} budget {budget:<4} seed {seed}: "
                 + "  ".join(f"{t} {v:.1f}" for t, v in out.items()))  # fmt: skip
        return out

    def mean_score(self, image: str, text: str, cand: Candidate, budget: int, seeds: range) -> float:
        return float(np.mean([self.scores(image, cand, budget, s)[text] for s in seeds]))

    def run(self) -> list[PairChoice]:
        cfg = self.config
        small = min(self.budgets)
        seeds = range(cfg.seeds)
        choices = []
        for image in dict.fromkeys(i for i, _ in self.pairs):
            self.say(f"stage 1: {image}, {len(cfg.candidates())} candidates at budget {small}")
            stage1 = {c: {t: self.mean_score(image, t, c, small, seeds) for i, t in self.pairs if i == image}
                      for c in cfg.candidates()}  # fmt: skip
            for text in [t for i, t in self.pairs if i == image]:
                top = sorted(stage1, key=lambda c: -stage1[c][text])[: cfg.top]
                self.say(f"stage 2: {image} + {text}, {len(top)} candidates at budgets {list(self.budgets)}")
                by_budget = {
                    c: {b: self.mean_score(image, text, c, b, seeds) for b in self.budgets} for c in top
                }
                ranking = sorted(top, key=lambda c: -np.mean(list(by_budget[c].values())))
                choices.append(self._stable_choice(image, text, ranking, by_budget, small))
        return choices

    def full_data_score(self, image: str, lr_img: float, augment: bool) -> float:
        """Val mean recall of one full-data run (source text encoder) with this image lr."""
        from mdd_bench.artifacts.references import train_full_data

        flag = str(augment).lower()
        key = f"full-data|{image}|lr_img={lr_img:g}|real_augment={flag}"
        if key not in self.log.entries:
            self.say(f"full data {image}, lr_img={lr_img:g}, real_augment={flag}: one run scored on val")
            model = train_full_data(self.workspace, image, TUNE_SEED, augment, lr_img=lr_img)
            self.log.entries[key] = {"val": score(self.workspace, model, "val")["mean"]}
            atomic_write_json(self.log.path, self.log.entries)
        value = float(self.log.entries[key]["val"])
        self.say(f"  full data {image:<14} lr_img={lr_img:<6g} real_augment={flag:<5}: val mean {value:.1f}")
        return value

    def full_data_choice(self) -> dict[str, dict[str, float]]:
        """Per image encoder, val mean recall of one full-data run per image lr (no augmentation)."""
        images = dict.fromkeys(i for i, _ in self.pairs)
        return {
            i: {f"{lr:g}": self.full_data_score(i, lr, False) for lr in self.config.full_lrs_img}
            for i in images
        }

    def real_augment_choice(self, lr_img: float) -> dict[str, float]:
        """Val mean recall of one full-data run of the source encoder without and with real augmentation."""
        source = self.protocol.image.source
        return {str(a).lower(): self.full_data_score(source, lr_img, a) for a in (False, True)}

    def _stable_choice(self, image, text, ranking, by_budget, small) -> PairChoice:
        ranked = [(c.key, float(np.mean(list(by_budget[c].values())))) for c in ranking]
        values: list[float] = []
        for cand in ranking:
            values = [self.scores(image, cand, small, s)[text] for s in range(self.config.stability_seeds)]
            if min(values) >= 0.5 * float(np.median(values)):
                return PairChoice(image, text, cand, by_budget[cand], values, True, ranked)
            self.say(f"  {image} + {text}: {cand.key} unstable (min {min(values):.1f}, "
                     f"median {np.median(values):.1f}); trying the next")  # fmt: skip
        return PairChoice(image, text, ranking[0], by_budget[ranking[0]], values, False, ranked)


def recipes_toml(
    choices: list[PairChoice],
    command: str,
    augment: dict[str, float] | None = None,
    full: dict[str, dict[str, float]] | None = None,
    source_text: str | None = None,
) -> str:
    lines = [f"# Chosen on val by `{command}` (see mdd_bench/tuning/recipes.py for the procedure)."]
    if augment:
        best = max(augment, key=augment.get)
        scores = ", ".join(f"{k}: {v:.1f}" for k, v in augment.items())
        lines += [f"# full-data val mean recall by real_augment: {scores}",
                  f"real_augment = {best}  # [eval] and [experts]"]  # fmt: skip
    for c in choices:
        if c.chosen is None:
            continue
        val = ", ".join(f"{b}: {v:.1f}" for b, v in c.val_by_budget.items())
        lines += [
            "",
            f"# val mean recall on random pairs {val}; stability over {len(c.stability)} seeds: min "
            f"{min(c.stability):.1f}, median {np.median(c.stability):.1f}{'' if c.stable else ' (UNSTABLE)'}",
        ]
        by_lr = (full or {}).get(c.image) if c.text == source_text else None
        if by_lr:
            scores = ", ".join(f"{lr}: {v:.1f}" for lr, v in by_lr.items())
            lines.append(f"# full-data val mean recall by image lr: {scores}")
        lines += [
            "[[eval.recipes]]",
            f'image = "{c.image}"',
            f'text = "{c.text}"',
            f"lr_img = {c.chosen.lr_img:g}",
            f"lr_txt = {c.chosen.lr_txt:g}",
            f"dsa = {str(c.chosen.dsa).lower()}",
        ]
        if by_lr:
            lines.append(f"full_lr_img = {max(by_lr, key=by_lr.get)}")
    return "\n".join(lines) + "\n"


def choices_json(
    choices: list[PairChoice],
    config: TuneConfig,
    seconds: float,
    augment: dict[str, float] | None = None,
    full: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    return {
        "config": asdict(config),
        "seconds": seconds,
        "real_augment_val": augment,
        "full_data_val_by_lr_img": full,
        "pairs": [
            {**asdict(c), "chosen": asdict(c.chosen) if c.chosen else None,
             "val_by_budget": {str(b): v for b, v in c.val_by_budget.items()}}
            for c in choices
        ],
    }  # fmt: skip
