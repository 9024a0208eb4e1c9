"""MTT-VL: vision-language trajectory matching (Wu et al., TMLR 2024), spec `mttvl_coreset.md`.

The student's unrolled steps keep their whole graph, so the matching loss back-propagates through
every step into the pixels, text embeddings and the two learned step sizes (memory grows with
syn_steps). The student loss is symmetric InfoNCE; each step draws a fresh random mini-batch.

Where this differs from the reference, and why:
- Logit scale: the reference multiplies the student's cosine logits by log(1/0.07) = 2.66 where its
  experts and its evaluation use 1/0.07 = 14.29; here the student uses 1/temperature, and
  `--set mtt-vl.buggy_logit_scale=true` restores the reference's scale for reproduction.
- The best iteration is chosen on val (the reference reports the best of its test evaluations).
- The native evaluation trains with both learned step sizes (the reference's ignores the text one).
- Learned step sizes are kept >= `clamp_lr` (0).
Only Flickr30k at 100 pairs has public settings (README); the `paper` defaults use them at every budget
and dataset, with 3000 iterations (the parser default is 50,000; the project page shows results after
2,000), as LoRS and MDM run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mdd_bench.distill.matching import SMOKE_DEFAULTS, TrajectoryHParams, TrajectoryMatching


@dataclass
class MTTVLHParams(TrajectoryHParams):
    buggy_logit_scale: bool = False  # the reference's log(1/T) student scale


class MTTVL(TrajectoryMatching):
    name = "mtt-vl"
    gradient = "unroll"
    student_loss = "infonce"
    batch_order = "fresh"
    hparams_class = MTTVLHParams
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {
            "iterations": 3000,
            "eval_every": 50,
            "eval_repetitions": 5,
            "syn_batch": 100,
            "lr_img": 1000.0,
            "lr_txt": 1000.0,
        },
        "cpu": {
            # NOT yet chosen on val: probes at 100 pairs (seed 0) with lr_img = lr_txt 100 and 1000 both
            # diverged (the learned step sizes became NaN before iteration 300); until the cause is found
            # these settings can fail a cell (recorded as failed, the rest of the grid continues).
            "iterations": 300,
            "eval_every": 50,
            "eval_repetitions": 2,
            "syn_batch": 20,
            "lr_img": 100.0,
            "lr_txt": 100.0,
        },
        "smoke": SMOKE_DEFAULTS,
    }

    def logit_scale(self, temperature: float) -> float:
        return math.log(1.0 / temperature) if self.hparams.buggy_logit_scale else 1.0 / temperature
