"""LoRS: TESLA plus a learned low-rank similarity (ICML 2024), spec `lors_tesla.md`.

The student's WBCE targets are S = diag(a) + (alpha / r) L R^T (a = 1, L ~ N(0, 1), R = 0: the
identity at start), of which each step builds only its batch's block; a, L, R are optimised with
the data. The distilled set ships S's factors and the learned step sizes as extras, which the
`native` evaluation track trains with. Everything TESLA's docstring lists as differing from the
reference holds here too; in particular a budget of N means N pairs plus S (the reference distils
N - 1 pairs and the similarity), and the stored bytes of S are reported beside the set
(`similarity_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from mdd_bench.distill.matching import TRAJECTORY_SPACES, TrajectoryHParams, paper_table
from mdd_bench.distill.similarity import Similarity
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.methods.tesla import PAPER as TESLA_PAPER
from mdd_bench.methods.tesla import TESLA
from mdd_bench.search_space import Choice, Float

# The similarity columns of the same script rows (lr_sim, sim_type/rank, alpha).
SIMILARITY: dict[tuple[str, int], dict[str, Any]] = {
    ("flickr", 100): {"lr_sim": 10.0, "sim_rank": 10, "sim_alpha": 3.0},
    ("flickr", 200): {"lr_sim": 10.0, "sim_rank": 5, "sim_alpha": 1.0},
    ("flickr", 500): {"lr_sim": 100.0, "sim_rank": 20, "sim_alpha": 0.01},
    ("coco", 100): {"lr_sim": 5.0, "sim_rank": 10, "sim_alpha": 1.0},
    ("coco", 200): {"lr_sim": 50.0, "sim_rank": 20, "sim_alpha": 1.0},
    ("coco", 500): {"lr_sim": 500.0, "sim_rank": 40, "sim_alpha": 1.0},
}
PAPER = {key: {**row, **SIMILARITY[key]} for key, row in TESLA_PAPER.items()}
# TESLA's ranges plus the similarity's, as the LoRS scripts set them per budget (lr_sim, rank, alpha).
SIMILARITY_SPACE = {
    "lr_sim": Float(0.1, 1000.0, log=True),
    "sim_rank": Choice((5, 10, 20)),
    "sim_alpha": Float(0.01, 3.0, log=True),
}
SPACES = {
    "paper": {**TRAJECTORY_SPACES["paper"], **SIMILARITY_SPACE},
    "cpu": {**TRAJECTORY_SPACES["cpu"], **SIMILARITY_SPACE, "lr_sim": Float(0.1, 100.0, log=True)},
    "smoke": {**TRAJECTORY_SPACES["smoke"], "sim_rank": Choice((1, 2))},
}


@dataclass
class LoRSHParams(TrajectoryHParams):
    similarity: Literal["low-rank", "full", "identity"] = "low-rank"  # identity: TESLA's targets
    sim_rank: int = 10
    sim_alpha: float = 1.0
    lr_sim: float = 10.0


class LoRS(TESLA):
    name = "lors"
    display_name = "LoRS"
    paper = "Xu et al., Low-Rank Similarity Mining for Multimodal Dataset Distillation, ICML 2024"
    # src/epoch.py:evaluate_synset_with_similarity never calls DiffAugment (its check meant to forbid
    # DSA never fires; lors_tesla.md section 4, mttvl_coreset.md section 6).
    native_dsa = False
    hparams_class = LoRSHParams
    search_space = SPACES
    extra_factors: ClassVar[dict[str, dict[str, Any]]] = {"Similarity: identity": {"similarity": "identity"}}
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # TESLA's cpu data lrs, then lr_sim chosen on val at 100 pairs, seed 0 (best native val mean recall
        # over 300 iterations; initial set 16.8): lr_sim 1: 23.4 (at 100), 10: 22.6 (at 100), 100: never
        # beat the init (the learned similarity collapses retrieval to 1-8). Rank 10 and alpha 1 as the
        # reference's COCO-100 row (not tuned). Data lrs re-checked on RepBlend's grid (lr_sim 1,
        # reports/cpu/probes/lors_val.jsonl): 10/10: 21.4 (at 300), 3/3: 21.3 (at 250), both below
        # 100/100's 23.4 (at 100), so TESLA's 100/100 stay.
        "cpu": {**TESLA.defaults["cpu"], "lr_sim": 1.0, "sim_rank": 10, "sim_alpha": 1.0},
        "smoke": {**TESLA.defaults["smoke"], "sim_rank": 2},
    }

    def similarity(self, syn: SyntheticSet, generator: torch.Generator) -> Similarity:
        hp = self.hparams
        return Similarity(syn, hp.similarity, hp.sim_rank, hp.sim_alpha, generator)

    def similarity_lr(self) -> float:
        return self.hparams.lr_sim

    @classmethod
    def cell_defaults(cls, protocol, budget: int) -> dict[str, Any]:
        return paper_table(protocol, budget, PAPER) if "paper" in protocol.lineage else {}
