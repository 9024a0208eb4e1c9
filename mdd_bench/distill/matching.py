"""The trajectory-matching family's shared method: MTT-VL, TESLA, LoRS and RepBlend differ in a few switches.

Each iteration takes an expert's epoch-s checkpoint theta_0 and its epoch-(s+M) checkpoint theta_T,
runs a functional student K SGD steps on synthetic mini-batches from theta_0 with learnable step
sizes (one per modality), and moves pixels, text embeddings, step sizes (and a learned similarity)
to bring the student's end point to theta_T (`trajectory.match_distance`). What differs:

| switch | MTT-VL | TESLA (WBCE) | LoRS | RepBlend |
|---|---|---|---|---|
| gradient | full unroll (`unroll`) | constant memory (`tesla_backward`) | constant memory | constant memory |
| student loss | InfoNCE | WBCE against I | WBCE against the learned S | as LoRS, on blended head inputs |
| batches | a fresh random batch per step | cycling permutation | cycling permutation | cycling |
| towers (what trains) | image encoder + text head | as MTT-VL | as MTT-VL | 2 heads, frozen encoder |

A method file sets those class attributes and its per-protocol defaults; a method whose student steps
differ (RepBlend) subclasses `TrajectoryRun` and overrides `step_losses`.

The gradient, the student loss and the towers are also hyper-parameters (`"method"`: the class's own), so
one switch can be flipped alone with every other setting kept: each method's `factors` ablation group
(`mdd-bench ablate METHOD --groups factors`) flips each of its switches in turn, plus the method's own
extras (LoRS: the identity similarity; RepBlend: no blending). Which switch carries a method's gain or
loss is then a table, not a guess. Towers are not flipped for RepBlend, whose blended student steps
need the frozen encoder's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from mdd_bench.api import DistillContext, HParams, Method
from mdd_bench.distill.init import initial_pairs
from mdd_bench.distill.loop import DistillLoop
from mdd_bench.distill.merge import ExpertBank
from mdd_bench.distill.resume import buffers, load_buffers, load_tensors
from mdd_bench.distill.similarity import Similarity
from mdd_bench.distill.student import FunctionalStudent
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.distill.trajectory import (
    BatchSchedule,
    StepLoss,
    TrajectorySampler,
    match_distance,
    tesla_backward,
    unroll,
)
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.training import batch_loss
from mdd_bench.models.dual import BACKBONE, FROZEN
from mdd_bench.search_space import Choice, Float, Int


@dataclass
class TrajectoryHParams(HParams):
    # The most iterations; None: the protocol's [distill] max_iterations. Val checks, the plateau stop
    # and the per-track selection are the protocol's rule, the same for every method (`distill/loop.py`).
    iterations: int | None = None
    syn_steps: int = 8  # K
    expert_epochs: int = 1  # M
    max_start_epoch: int = 2  # s ~ U{0, ..., max_start_epoch - 1}
    syn_batch: int = 20  # b, synthetic pairs per student step
    lr_img: float = 1000.0
    lr_txt: float = 1000.0
    lr_lr: float = 1e-2
    lr_teacher: float = 0.0  # initial learned step sizes; 0 means the experts' own lr
    momentum: float = 0.5  # of every group (pixels, texts, step sizes, similarity)
    clamp_lr: float = 0.0  # learned step sizes are kept >= this (a negative lr would train backwards)
    # Joint gradient-norm clip over pixels and texts before each outer step; 0 = off, as the references
    # (MTT-VL's clip lines are commented out, TESLA/LoRS have none).
    grad_clip: float = 0.0
    normaliser: Literal["per-modality", "shared"] = "per-modality"
    temperature: float = 0.0  # the student's; 0 means the protocol's (the experts' and evaluation's)
    data_init: Literal["random", "noise"] = "random"
    # Factor switches: "method" keeps the method's own (its class attribute of the same name).
    gradient: Literal["method", "unroll", "tesla"] = "method"
    student_loss: Literal["method", "infonce", "wbce"] = "method"
    towers: Literal["method", "backbone+text-head", "frozen-backbone+heads"] = "method"


# Every trajectory method's `smoke` settings: a few short steps (tests only).
SMOKE_DEFAULTS = {"syn_steps": 2, "syn_batch": 4}


def _start_epochs(protocol, drawn: dict[str, Any], cap: int = 1_000) -> int:
    """The largest max_start_epoch the stored epochs allow with the drawn expert_epochs (s + M <= kept)."""
    return max(1, min(cap, protocol.experts.keep_epochs + 1 - drawn["expert_epochs"]))


# What `mdd-bench tune` varies for every trajectory method: what the reference scripts set per dataset and
# budget. Untied data lrs; lr_lr with 0 = fixed step sizes; the initial step size; student steps K, expert
# span M and start epochs (s + M within the stored epochs); synthetic batch.
TRAJECTORY_SPACES: dict[str, dict[str, Any]] = {
    "paper": {
        "lr_img": Float(10.0, 10_000.0, log=True),
        "lr_txt": Float(10.0, 10_000.0, log=True),
        "lr_lr": Choice((0.0, 1e-3, 1e-2, 1e-1)),
        "lr_teacher": Float(0.01, 0.1, log=True),
        "syn_steps": Choice((4, 8, 16)),
        "expert_epochs": Int(1, 3),
        "max_start_epoch": Int(1, lambda p, d: _start_epochs(p, d, cap=5)),
        "syn_batch": Choice((20, 40, 100)),
    },
    "cpu": {
        "lr_img": Float(1.0, 3000.0, log=True),
        "lr_txt": Float(0.3, 1000.0, log=True),
        "lr_lr": Choice((0.0, 1e-4, 1e-3, 1e-2)),
        "lr_teacher": Float(0.01, 0.1, log=True),
        "syn_steps": Choice((4, 8, 12)),
        "expert_epochs": Int(1, 2),
        "max_start_epoch": Int(1, _start_epochs),
        "syn_batch": Choice((10, 20, 40)),
    },
    "smoke": {"lr_img": Float(1.0, 100.0, log=True), "lr_lr": Choice((0.0, 1e-2))},
}


# Display names of the factor table's variants.
FACTOR_LABELS = {
    ("gradient", "unroll"): "Gradient: full unroll",
    ("gradient", "tesla"): "Gradient: constant memory",
    ("student_loss", "infonce"): "Student loss: InfoNCE",
    ("student_loss", "wbce"): "Student loss: WBCE",
    ("towers", BACKBONE): "Towers: trainable backbone",
    ("towers", FROZEN): "Towers: frozen backbone + heads",
}
FLIPS = {"gradient": ("unroll", "tesla"), "student_loss": ("infonce", "wbce"), "towers": (BACKBONE, FROZEN)}


def factor_variants(cls: type[TrajectoryMatching]) -> dict[str, dict[str, Any]]:
    """The `factors` ablation group: the method as configured, then each switch flipped alone."""
    variants: dict[str, dict[str, Any]] = {"As configured": {}}
    for switch, values in FLIPS.items():
        if switch == "towers" and cls.make_run is not TrajectoryMatching.make_run:
            continue  # its own student steps (RepBlend's blending) need its towers
        other = next(v for v in values if v != getattr(cls, switch))
        variants[FACTOR_LABELS[(switch, other)]] = {switch: other}
    return {**variants, **cls.extra_factors}


class TrajectoryMatching(Method):
    family = "trajectory-matching"
    artifacts = ("text_features", "experts")
    hparams_class = TrajectoryHParams
    search_space = TRAJECTORY_SPACES
    gradient: ClassVar[Literal["unroll", "tesla"]] = "tesla"
    student_loss: ClassVar[Literal["infonce", "wbce"]] = "wbce"
    batch_order: ClassVar[Literal["cycle", "fresh"]] = "cycle"
    # What the experts and the student train (`models.dual.TOWERS`); with a frozen backbone the method
    # must declare the `head_experts` artifact instead of `experts`.
    towers: ClassVar[str] = BACKBONE
    # Flips of the method's own extras added to its `factors` group (variant name -> overrides).
    extra_factors: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "ablations" not in cls.__dict__:
            cls.ablations = {"factors": factor_variants(cls)}

    def switch(self, name: str) -> str:
        """A factor switch as this run uses it: the hyper-parameter when set, else the method's own."""
        value = getattr(self.hparams, name)
        return getattr(type(self), name) if value == "method" else value

    def make_run(self, ctx: DistillContext, budget: int) -> TrajectoryRun:
        """One run's state; a method with its own student steps returns a `TrajectoryRun` subclass."""
        return TrajectoryRun(ctx, self, budget)

    def similarity(self, syn: SyntheticSet, generator: torch.Generator) -> Similarity:
        """The student's targets: the identity unless the method learns a similarity (LoRS)."""
        return Similarity(syn, "identity")

    def similarity_lr(self) -> float:
        return 0.0

    def logit_scale(self, temperature: float) -> float:
        return 1.0 / temperature

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        hp = self.hparams
        run = self.make_run(ctx, budget)
        provenance = {
            "data_init": hp.data_init,
            "init_indices": run.chosen,
            "eval_loss": run.student_loss,
            "similarity": run.similarity.kind,
            "towers": run.towers,  # whose step sizes lr_img/lr_txt are (evaluation/evaluator.py)
            "eval_dsa": self.native_dsa,  # the native track's DSA, on native val as on test
        }
        loop = DistillLoop(ctx, run.syn, hp.iterations, provenance, desc=self.name)
        out = loop.run(run.step, resumable=run)
        ctx.stats.extra.update(
            similarity_bytes=run.similarity.stored_bytes,
            match_loss_last10=float(np.mean(run.losses[-10:])) if run.losses else None,
            learned_lr_img=float(out.extras["lr_img"]),
            learned_lr_txt=float(out.extras["lr_txt"]),
            # Each track's set is its own val's choice, with the step sizes of that iteration.
            learned_lrs={
                track: [float(chosen.extras["lr_img"]), float(chosen.extras["lr_txt"])]
                for track, chosen in ctx.selected.items()
            },
            per_modality_last10={
                m: float(np.mean([p[m] for p in run.per_modality[-10:]])) for m in ("image", "text")
            }
            if run.per_modality
            else None,
        )
        return out


class TrajectoryRun:
    """One run's state (synthetic set, student, expert sampler, optimiser); `step()` is one iteration."""

    def __init__(self, ctx: DistillContext, method: TrajectoryMatching, budget: int) -> None:
        hp: TrajectoryHParams = method.hparams  # type: ignore[assignment]
        self.hp, self.method, self.ctx = hp, method, ctx
        if hp.syn_steps < 1 or hp.syn_batch < 2:
            raise MddError("syn_steps must be >= 1 and syn_batch >= 2 (a contrastive step needs two pairs).")
        self.gradient, self.student_loss = method.switch("gradient"), method.switch("student_loss")
        self.towers = method.switch("towers")
        if self.towers != type(method).towers and type(self) is not TrajectoryRun:
            raise MddError(
                f"{method.name}.towers={self.towers}: its own student steps need its towers "
                f"({type(method).towers}). Leave towers at 'method'."
            )
        ws = ctx.workspace
        bank = ExpertBank(ctx.experts(self.towers), ctx.device)
        images, texts, self.chosen = initial_pairs(ws, budget, hp.data_init, ctx.seed)
        self.syn = SyntheticSet(images, texts, ctx.device)
        generator = torch.Generator().manual_seed(ctx.seed + 53)
        self.similarity = method.similarity(self.syn, generator)
        lr0 = hp.lr_teacher or ctx.protocol.experts.lr
        self.lrs = {
            "image": self.syn.add_extra("lr_img", torch.tensor(float(lr0))),
            "text": self.syn.add_extra("lr_txt", torch.tensor(float(lr0))),
        }
        self.optimiser = self.syn.sgd(
            hp.lr_img,
            hp.lr_txt,
            hp.momentum,
            [(list(self.lrs.values()), hp.lr_lr), (self.similarity.params, method.similarity_lr())],
        )
        self.student = FunctionalStudent(
            ws.fresh_model(ctx.seed + 61, towers=self.towers).train(), bank.layout
        )
        self.sampler = TrajectorySampler(bank, hp.max_start_epoch, hp.expert_epochs, ctx.seed)
        self.schedule = BatchSchedule(self.syn.size, hp.syn_batch, method.batch_order, ctx.seed + 67)
        temperature = hp.temperature or ctx.protocol.model.temperature
        self.scale = method.logit_scale(temperature)
        self.losses: list[float] = []
        self.per_modality: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        """Everything later steps depend on (`distill/resume.py`): a resumed run steps as this one."""
        return {
            "syn": self.syn.state(),  # the learned step sizes are extras
            "similarity": [p.detach().to("cpu", copy=True) for p in self.similarity.params],
            "optimiser": self.optimiser.state_dict(),
            "sampler": self.sampler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "student": buffers(self.student.model),
            "losses": list(self.losses),
            "per_modality": list(self.per_modality),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.syn.load_state(state["syn"])
        load_tensors(self.similarity.params, state["similarity"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.sampler.load_state_dict(state["sampler"])
        self.schedule.load_state_dict(state["schedule"])
        load_buffers(self.student.model, state["student"])
        self.losses, self.per_modality = list(state["losses"]), list(state["per_modality"])

    def step_loss(self, batches: list[torch.Tensor]):
        syn, loss_name = self.syn, self.student_loss

        def loss_at(theta, k: int) -> torch.Tensor:
            idx = batches[k].to(syn.device)
            logits = self.student.logits(theta, syn.images[idx], syn.texts[idx], self.scale)
            return batch_loss(logits, loss_name, self.similarity.block(idx))

        return loss_at

    def step_losses(self, batches: list[torch.Tensor]) -> tuple[StepLoss, StepLoss | None]:
        """(the step loss with its graph to the synthetic tensors, an optional cheaper one for the
        trajectory pass of `tesla_backward`); one iteration's closures over its `batches`."""
        return self.step_loss(batches), None

    def step(self, _: int = 0) -> torch.Tensor:
        hp = self.hp
        _, _, start, target = self.sampler.next()
        loss_at, trajectory_loss = self.step_losses(self.schedule.steps(hp.syn_steps))
        self.optimiser.zero_grad(set_to_none=True)
        if self.gradient == "unroll":
            final = unroll(loss_at, start, self.lrs, hp.syn_steps, create_graph=True)
            loss = match_distance(final, start, target, hp.normaliser)
            loss.backward()
            with torch.no_grad():
                per = {
                    m: float((final[m] - target[m]).pow(2).sum() / (start[m] - target[m]).pow(2).sum())
                    for m in final
                }
            value = float(loss.detach())
        else:
            leaves = [self.syn.images, self.syn.texts, *self.similarity.params]
            result = tesla_backward(
                loss_at, start, target, self.lrs, hp.syn_steps, leaves, hp.normaliser, trajectory_loss
            )
            value, per = result.loss, result.per_modality
        if hp.grad_clip > 0:
            self.syn.clip_grad(hp.grad_clip)
        self.optimiser.step()
        with torch.no_grad():
            for lr in self.lrs.values():
                lr.clamp_(min=hp.clamp_lr)
        self.losses.append(value)
        self.per_modality.append(per)
        return torch.tensor(value)


def paper_table(protocol, budget: int, table: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """The reference scripts' row for the protocol's dataset and `budget` (Flickr8k uses Flickr30k's;
    a budget between rows takes the nearest row at or below it)."""
    dataset = protocol.data.dataset
    family = "coco" if dataset.startswith("coco") else "flickr"
    rows = sorted(b for f, b in table if f == family)
    below = [b for b in rows if b <= budget]
    row = below[-1] if below else rows[0]
    return dict(table[(family, row)])
