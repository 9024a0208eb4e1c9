"""The distillation loop's bookkeeping, shared by every optimisation-based method, under one rule.

The method supplies one step (a closure returning its loss); the loop times it, stops on a non-finite
loss with a one-line error, and applies the protocol's `[distill]` rule, the same for every method:

- val checks every `eval_every` iterations, iteration 0 (the initial set) included, each with the same
  `val_repetitions` seeds (paired scores, so two checks differ by the data, not by the draw);
- one selection per track that trains differently (hard; native when the set has native extras): each
  track keeps its own best states, since a learned step size can help one track and hurt the other;
- a stop once no track has improved for `patience` checks, or at the maximum (flagged: still rising);
- the `rescore_top` best checks of each track re-scored with `rescore_repetitions` runs (the first runs
  reused) before the choice, so one lucky cheap score does not pick the iteration.

The returned set is the hard track's choice (the headline); `ctx.selected` holds each track's and
`ctx.initial` the iteration-0 set, which the runner evaluates for the paired gain.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mdd_bench.distill.resume import Resumable, global_rng_state, set_global_rng_state
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError, NonFiniteLoss
from mdd_bench.evaluation.evaluator import TRACKS


@dataclass
class Candidate:
    iteration: int
    runs: list[float]
    state: dict[str, torch.Tensor]

    @property
    def score(self) -> float:
        return float(np.mean(self.runs))


@dataclass
class TrackSelection:
    """One track's curve, its best checks so far (at most `keep`), and its choice after re-scoring."""

    track: str
    keep: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    best: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    rescored: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_score(self) -> float:
        return max((c.score for c in self.best), default=float("-inf"))

    def add(self, candidate: Candidate) -> bool:
        """Record a check; True when it beats every earlier check of this track."""
        improved = candidate.score > self.best_score
        self.curve.append((candidate.iteration, round(candidate.score, 4)))
        self.best.append(candidate)
        # Highest score first; ties go to the earlier iteration (fewer steps for the same val).
        self.best.sort(key=lambda c: (-c.score, c.iteration))
        del self.best[self.keep :]
        return improved


def choose(candidates: list[Candidate]) -> Candidate:
    """The best re-scored candidate; ties go to the earliest iteration."""
    return min(candidates, key=lambda c: (-c.score, c.iteration))


class DistillLoop:
    def __init__(
        self,
        ctx,
        synthetic: SyntheticSet,
        iterations: int | None = None,
        provenance: dict[str, Any] | None = None,
        warmup: int = 2,
        desc: str = "distill",
    ) -> None:
        rule = ctx.protocol.distill
        self.max_iterations = rule.max_iterations if iterations is None else iterations
        if self.max_iterations < 0:
            raise MddError("iterations must be >= 0.")
        self.ctx = ctx
        self.rule = rule
        self.synthetic = synthetic
        self.provenance = dict(provenance or {})
        self.warmup = warmup
        self.desc = desc
        self.step_times: list[float] = []
        self.tracks: dict[str, TrackSelection] = {}
        self.resumed_from: int | None = None  # the check a saved run went on from
        self.resumed_s = 0.0  # the loop seconds of the processes before, up to that check

    # ------------------------------------------------------------------ selection

    def select_tracks(self, candidate: DistilledSet) -> tuple[str, ...]:
        """The context's tracks if it names them, else hard, plus native when the set trains differently."""
        if self.ctx.select_tracks:
            unknown = [t for t in self.ctx.select_tracks if t not in TRACKS]
            if unknown:
                raise MddError(f"Unknown selection track '{unknown[0]}'. Use: {', '.join(TRACKS)}.")
            return tuple(self.ctx.select_tracks)
        native = self.ctx.evaluator.recipe_for(candidate, "native")[1]
        return ("hard", "native") if native else ("hard",)

    def _check(self, iteration: int) -> tuple[dict[str, float], bool]:
        state = self.synthetic.state()
        candidate = SyntheticSet.distilled(state, self.provenance)
        if not self.tracks:
            for track in self.select_tracks(candidate):
                self.tracks[track] = TrackSelection(track, self.rule.rescore_top)
        improved = False
        scores: dict[str, float] = {}
        for track, selection in self.tracks.items():
            runs = self.ctx.val_runs(candidate, track, self.rule.val_repetitions)
            improved |= selection.add(Candidate(iteration, runs, state))
            scores[track] = float(np.mean(runs))
        if self.ctx.check_hook is not None:
            self.ctx.check_hook(iteration, scores)
        return scores, improved

    def _rescore(self) -> None:
        extra = self.rule.rescore_repetitions - self.rule.val_repetitions
        for track, selection in self.tracks.items():
            rescored: list[Candidate] = []
            for c in selection.best:
                runs = list(c.runs)
                if extra > 0:
                    candidate = SyntheticSet.distilled(c.state, self.provenance)
                    runs += self.ctx.val_runs(candidate, track, extra, first=self.rule.val_repetitions)
                rescored.append(Candidate(c.iteration, runs, c.state))
                selection.rescored.append(
                    {
                        "iteration": c.iteration,
                        "val": round(c.score, 4),
                        "rescored": round(float(np.mean(runs)), 4),
                    }
                )
            selection.chosen = choose(rescored)

    # ------------------------------------------------------------------ the loop

    def _sync(self) -> None:
        if self.synthetic.device.type == "cuda":
            torch.cuda.synchronize(self.synthetic.device)

    def run(
        self, step: Callable[[int], torch.Tensor | float], resumable: Resumable | None = None
    ) -> DistilledSet:
        """Iteration 0 (the initial set) is scored too, so a method that never helps returns its init.

        With `resumable` (the method's run state) and a checkpoint on the context (`ctx.checkpoint`, set
        by the runner for grid cells), every check is saved and a saved run goes on from its last check.
        """
        checkpoint = getattr(self.ctx, "checkpoint", None) if resumable is not None else None
        saved = checkpoint.load() if checkpoint is not None else None
        start = time.perf_counter()
        if saved is not None:
            initial, done, since, stop, last_loss = self._restore(saved, resumable)
        else:
            initial = self.synthetic.state()
            self._check(0)
            done, since, stop, last_loss = 0, 0, "max_iterations", float("nan")
            self._save(checkpoint, resumable, initial, done, since, stop, last_loss, start)
        every = self.rule.eval_every
        with self.ctx.progress(self.max_iterations, self.desc) as bar:
            if done:
                bar.update(done)
            for it in range(done + 1, self.max_iterations + 1):
                if stop == "plateau":
                    break
                self._sync()
                began = time.perf_counter()
                loss = step(it)
                self._sync()
                self.step_times.append(time.perf_counter() - began)
                done = it
                last_loss = float(loss)
                if last_loss != last_loss or last_loss in (float("inf"), float("-inf")):
                    raise NonFiniteLoss(
                        f"{self.desc}: the loss became {last_loss} at iteration {it}. Lower the "
                        "learning rates (--set METHOD.lr_img=..., lr_txt=...)."
                    )
                bar.update(1)
                if it % every == 0 or it == self.max_iterations:
                    scores, improved = self._check(it)
                    since = 0 if improved else since + 1
                    best = {t: f"{s.best_score:.1f}" for t, s in self.tracks.items()}
                    bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{scores.get('hard', 0.0):.1f}", best=best)
                    if since >= self.rule.patience:
                        stop = "plateau"
                    self._save(checkpoint, resumable, initial, done, since, stop, last_loss, start)
        if self.max_iterations == 0:
            stop = "no_iterations"
        self._rescore()
        return self._finish(initial, done, stop, last_loss)

    # ------------------------------------------------------------------ checkpoints

    def _save(self, checkpoint, resumable, initial, done, since, stop, last_loss, start) -> None:
        if checkpoint is None:
            return
        tracks = {
            name: {
                "keep": s.keep,
                "curve": s.curve,
                "best": [(c.iteration, c.runs, c.state) for c in s.best],
            }
            for name, s in self.tracks.items()
        }
        checkpoint.save(
            {
                "iteration": done,
                "since": since,
                "stop": stop,
                "last_loss": last_loss,
                "step_times": self.step_times,
                "tracks": tracks,
                "initial": initial,
                "method": resumable.state_dict(),
                "rng": global_rng_state(self.synthetic.device),
                # Seconds of this run's loop up to this check, earlier processes' included.
                "loop_s": self.resumed_s + time.perf_counter() - start,
            }
        )

    def _restore(self, saved: dict[str, Any], resumable: Resumable):
        resumable.load_state_dict(saved["method"])
        set_global_rng_state(saved["rng"], self.synthetic.device)
        self.tracks = {}
        for name, t in saved["tracks"].items():
            selection = TrackSelection(name, t["keep"], [tuple(p) for p in t["curve"]])
            selection.best = [Candidate(i, list(runs), state) for i, runs, state in t["best"]]
            self.tracks[name] = selection
        self.step_times = list(saved["step_times"])
        self.resumed_s = float(saved["loop_s"])
        self.resumed_from = int(saved["iteration"])
        return (
            saved["initial"],
            self.resumed_from,
            int(saved["since"]),
            saved["stop"],
            float(saved["last_loss"]),
        )

    def _finish(self, initial: dict, done: int, stop: str, last_loss: float) -> DistilledSet:
        primary = "hard" if "hard" in self.tracks else next(iter(self.tracks))
        chosen = {t: s.chosen for t, s in self.tracks.items()}
        best_iterations = {t: c.iteration for t, c in chosen.items()}
        made = {**self.provenance, "best_iterations": best_iterations}
        sets = {
            t: SyntheticSet.distilled(c.state, {**made, "best_iteration": c.iteration, "selected_on": t})
            for t, c in chosen.items()
        }
        self.ctx.selected = sets
        self.ctx.initial = SyntheticSet.distilled(initial, {**self.provenance, "initial_set": True})
        stats = self.ctx.stats
        stats.iterations = done
        stats.iters_to_best = best_iterations[primary]
        timed = self.step_times[self.warmup :] or self.step_times
        stats.time_per_iter_s = statistics.median(timed) if timed else None
        selection = {
            t: {"iteration": s.chosen.iteration, "val": round(s.chosen.score, 4), "candidates": s.rescored}
            for t, s in self.tracks.items()
        }
        stats.extra.update(
            val_curve=self.tracks[primary].curve,
            val_curves={t: s.curve for t, s in self.tracks.items()},
            selection=selection,
            best_val=selection[primary]["val"],
            final_loss=last_loss,
            select_tracks=list(self.tracks),
            stop=stop,
            still_rising=stop == "max_iterations",
            max_iterations=self.max_iterations,
        )
        if self.resumed_from is not None:
            stats.extra["resumed"] = {
                "from_iteration": self.resumed_from,
                "earlier_loop_s": round(self.resumed_s, 2),
            }
            stats.resumed_s += self.resumed_s
        return sets[primary]
