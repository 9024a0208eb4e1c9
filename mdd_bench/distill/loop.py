"""The distillation loop's bookkeeping, shared by every optimisation-based method.

The method supplies one step (a closure returning its loss); the loop times it, stops on a
non-finite loss with a one-line error, scores the set on val every `eval_every` iterations (never
test), keeps the best state and fills the context's stats: iterations, iterations to best, median
time per iteration after warm-up (evaluations excluded) and the val curve.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError


class DistillLoop:
    def __init__(
        self,
        ctx,
        synthetic: SyntheticSet,
        iterations: int,
        eval_every: int,
        eval_repetitions: int = 1,
        track: str = "hard",
        provenance: dict[str, Any] | None = None,
        warmup: int = 2,
        desc: str = "distill",
    ) -> None:
        if iterations < 0 or eval_every < 1 or eval_repetitions < 1:
            raise MddError("iterations must be >= 0, eval_every and eval_repetitions >= 1.")
        self.ctx = ctx
        self.synthetic = synthetic
        self.iterations = iterations
        self.eval_every = eval_every
        self.eval_repetitions = eval_repetitions
        self.track = track
        self.provenance = dict(provenance or {})
        self.warmup = warmup
        self.desc = desc
        self.curve: list[tuple[int, float]] = []
        self.step_times: list[float] = []

    def _score(self, iteration: int) -> float:
        candidate = SyntheticSet.distilled(self.synthetic.state(), self.provenance)
        score = self.ctx.evaluate_on_val(candidate, self.track, self.eval_repetitions)
        self.curve.append((iteration, round(float(score), 4)))
        return float(score)

    def _sync(self) -> None:
        if self.synthetic.device.type == "cuda":
            torch.cuda.synchronize(self.synthetic.device)

    def run(self, step: Callable[[int], torch.Tensor | float]) -> DistilledSet:
        """Iteration 0 (the initial set) is scored too, so a method that never helps returns its init."""
        best_score = self._score(0)
        best_state, best_it = self.synthetic.state(), 0
        last_loss = float("nan")
        with self.ctx.progress(self.iterations, self.desc) as bar:
            for it in range(1, self.iterations + 1):
                self._sync()
                start = time.perf_counter()
                loss = step(it)
                self._sync()
                self.step_times.append(time.perf_counter() - start)
                last_loss = float(loss)
                if last_loss != last_loss or last_loss in (float("inf"), float("-inf")):
                    raise MddError(
                        f"{self.desc}: the loss became {last_loss} at iteration {it}. Lower the "
                        "learning rates (--set METHOD.lr_img=..., lr_txt=...)."
                    )
                bar.update(1)
                if it % self.eval_every == 0 or it == self.iterations:
                    score = self._score(it)
                    if score > best_score:
                        best_score, best_state, best_it = score, self.synthetic.state(), it
                    bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{score:.1f}", best=f"{best_score:.1f}")
        stats = self.ctx.stats
        stats.iterations = self.iterations
        stats.iters_to_best = best_it
        timed = self.step_times[self.warmup :] or self.step_times
        stats.time_per_iter_s = statistics.median(timed) if timed else None
        stats.extra.update(
            val_curve=self.curve, best_val=round(best_score, 4), final_loss=last_loss, eval_track=self.track
        )
        return SyntheticSet.distilled(best_state, {**self.provenance, "best_iteration": best_it})
