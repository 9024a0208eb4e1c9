"""MDM: multimodal distribution matching (CVPR 2026), spec `mdm.md`.

Each iteration merges two (expert, epoch) checkpoints around the pretrained anchor into a teacher
(Model-Stock ratio per tensor, strength `merge_alpha`), embeds a real batch (no gradient) and a
synthetic mini-batch, and descends InfoNCE on the synthetic pairs plus the geodesic-kernel energy
between real and synthetic agreement features u = norm(z_v + z_t) and discrepancy features
g = norm(z_v - z_t). Only pixels and text embeddings are learned (SGD, momentum 0.5, joint grad-norm
clip). The synthetic set starts from the pairs nearest the K-means centroids of the joint pair features.

Where this differs from the released code (`andyj1/mdm` @ 30b62d8), and why:
- Kernel energy: the paper's V-statistic with a square root (`statistic="v"`); the code's off-diagonal
  U-statistic is `--set mdm.statistic=u`. The released loop calls the kernel's default branch, which
  raises NotImplementedError; the first commit's chordal kernel exp(-(1-cos)^2/2s^2) is `kernel=chordal`.
- The best iteration is chosen on val (the reference selects on test) by the protocol's `[distill]` rule,
  the same for every method: checks every `eval_every` iterations including iteration 0 (so a run that
  never improves returns its initial set), a plateau stop, the best checks re-scored.
- No checkpoint is read from disk inside the loop: every checkpoint sits in memory as flat vectors
  (memory-mapped when too large) and the merge is written into one persistent frozen model.
- K-means features come from unaugmented images and the initial pixels are the unaugmented real
  images (the reference uses augmented crops for both, an accident of its loader). The feature model is
  one interpolation-merged teacher whatever `model_init` says, so the model-init ablation changes only
  the teachers of the loop.
- The `noise` init draws Gaussian pixels and texts with the training data's statistics (the reference
  hard-codes Flickr's; its branch is unreachable from its command line).
- The reference's model-init variants crash or are unreachable (spec section 10.5); these follow the
  spec's mapping: pretrained = anchor only, fine-tuned = one expert checkpoint, weighted-sum = a random
  convex mix of one checkpoint and the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from mdd_bench.api import DistillContext, HParams, Method
from mdd_bench.distill import (
    DistillLoop,
    ExpertBank,
    SyntheticSet,
    TeacherSampler,
    initial_pairs,
    kernel_energy,
)
from mdd_bench.distill.resume import rng_state, set_rng_state
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.models.dual import infonce
from mdd_bench.search_space import Float

LOSS_TERMS = ("nce", "agr", "dis")
# What `mdd-bench tune` varies: the untied data lrs, the two kernels' sigma and the two kernel terms'
# weights (InfoNCE's weight stays 1: the scale of the whole loss is the lrs').
_MDM_KERNEL_SPACE = {
    "sigma_agr": Float(0.1, 2.0, log=True),
    "sigma_dis": Float(0.1, 2.0, log=True),
    "w_agr": Float(0.1, 3.0, log=True),
    "w_dis": Float(0.1, 3.0, log=True),
}
SPACES = {
    "paper": {
        "lr_img": Float(10.0, 10_000.0, log=True),
        "lr_txt": Float(10.0, 10_000.0, log=True),
        **_MDM_KERNEL_SPACE,
    },
    "cpu": {
        "lr_img": Float(1.0, 3000.0, log=True),
        "lr_txt": Float(0.3, 1000.0, log=True),
        **_MDM_KERNEL_SPACE,
    },
    "smoke": {"lr_img": Float(1.0, 100.0, log=True)},
}


@dataclass
class MDMHParams(HParams):
    # The most iterations; None: the protocol's [distill] max_iterations (the run-length rule is the
    # protocol's, the same for every method).
    iterations: int | None = None
    lr_img: float = 1000.0
    lr_txt: float = 1000.0
    momentum: float = 0.5
    grad_clip: float = 1.0
    real_batch: int = 256
    syn_batch: int = 64
    real_augment: bool = True  # real batches carry the train-time augmentation (reference loader)
    data_init: Literal["joint", "image", "text", "random", "noise"] = "joint"
    kmeans_iterations: int = 100
    model_init: Literal["interpolation", "pretrained", "fine-tuned", "weighted-sum"] = "interpolation"
    merge_alpha: float = 0.5
    max_epoch: int = 0  # teachers come from expert epochs 1..max_epoch (0: every stored epoch)
    loss: str = "nce,agr,dis"
    w_nce: float = 1.0
    w_agr: float = 0.8
    w_dis: float = 0.8
    sigma_agr: float = 0.5
    sigma_dis: float = 0.5
    statistic: Literal["v", "u"] = "v"
    sqrt: bool = True
    kernel: Literal["geodesic", "chordal"] = "geodesic"


def loss_terms(spec: str) -> tuple[str, ...]:
    terms = tuple(t.strip() for t in spec.split(",") if t.strip())
    unknown = [t for t in terms if t not in LOSS_TERMS]
    if unknown or not terms:
        raise MddError(f"mdm.loss='{spec}': use a comma list of {', '.join(LOSS_TERMS)} (e.g. nce,dis).")
    return terms


def mdm_loss(
    real_v: torch.Tensor | None,
    real_t: torch.Tensor | None,
    syn_v: torch.Tensor,
    syn_t: torch.Tensor,
    hp: MDMHParams,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """w_nce InfoNCE(syn) + w_agr GKE(U_syn, U_real) + w_dis GKE(G_syn, G_real) over the terms in hp.loss.

    Inputs are unit-norm image and text features; u = norm(z_v + z_t), g = norm(z_v - z_t).
    """
    terms = loss_terms(hp.loss)
    parts: dict[str, torch.Tensor] = {}
    if "nce" in terms:
        parts["nce"] = hp.w_nce * infonce(syn_v @ syn_t.T / temperature)
    kernel = {"statistic": hp.statistic, "sqrt": hp.sqrt, "kind": hp.kernel}
    if {"agr", "dis"} & set(terms) and (real_v is None or real_t is None):
        raise MddError("The kernel terms of MDM need real features.")
    if "agr" in terms:
        u_syn, u_real = F.normalize(syn_v + syn_t, dim=-1), F.normalize(real_v + real_t, dim=-1)
        parts["agr"] = hp.w_agr * kernel_energy(u_syn, u_real, hp.sigma_agr, **kernel)
    if "dis" in terms:
        g_syn, g_real = F.normalize(syn_v - syn_t, dim=-1), F.normalize(real_v - real_t, dim=-1)
        parts["dis"] = hp.w_dis * kernel_energy(g_syn, g_real, hp.sigma_dis, **kernel)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


class RealBatches:
    """An endless stream of shuffled real training batches (a new permutation per pass, last partial
    batch dropped), moved to the device."""

    def __init__(self, ctx: DistillContext, batch: int, augment: bool) -> None:
        self.source = ctx.workspace.real_pairs("train", ctx.seed + 31_000 if augment else None)
        self.batch = min(batch, len(self.source))
        self.device = ctx.device
        self.generator = torch.Generator().manual_seed(ctx.seed + 17)
        self.order = torch.empty(0, dtype=torch.long)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.order) < self.batch:
            self.order = torch.randperm(len(self.source), generator=self.generator)
        idx, self.order = self.order[: self.batch], self.order[self.batch :]
        images, texts = self.source.batch(idx)
        return images.to(self.device, non_blocking=True), texts.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": rng_state(self.generator),
            "order": self.order.clone(),
            "augment": self.source.augment_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(self.generator, state["generator"])
        self.order = state["order"].clone()
        self.source.set_augment_state(state["augment"])


class MDM(Method):
    name = "mdm"
    family = "distribution-matching"
    display_name = "MDM"
    paper = "MDM: Multimodal Distribution Matching for VL Dataset Distillation, CVPR 2026 (arXiv 2605.23482)"
    # Its evaluation (src/epoch.py:evaluate_synset) applies DSA to every batch (mdm.md section 5).
    native_dsa = True
    artifacts = ("text_features", "experts")
    hparams_class = MDMHParams
    search_space = SPACES
    defaults: ClassVar[dict[str, dict[str, Any]]] = {
        # sh/distill.sh (Flickr8k, the only released config) and the spec's tables.
        "paper": {"max_epoch": 10},
        "cpu": {
            # Chosen on val at 100 pairs, seed 0 (best val mean recall over 300 iterations, 2 evaluation
            # runs every 50; initial K-means set 21.9): lr_img/lr_txt 300/30: 27.9, 100/10: 27.7,
            # 1000/100: 26.4 (200 its), 1000/10: 26.2, 1000/1000: 24.3, 3000/300: 21.9 (never beat the
            # init), 10000/1000: 21.9; InfoNCE alone at 1000/100: 24.1.
            "lr_img": 300.0,
            "lr_txt": 30.0,
            "real_augment": False,
        },
        "smoke": {
            "real_batch": 32,
            "syn_batch": 8,
            "kmeans_iterations": 10,
            "real_augment": False,
        },
    }

    @classmethod
    def cell_defaults(cls, protocol, budget: int) -> dict[str, Any]:
        # cpu at 500 pairs: the 100-pair lrs (300/30) never beat the initial K-means set on val (35.7, then
        # 33.0-33.5 from iteration 50), so the lrs were chosen again at 500 pairs, seed 0, the same way
        # (best val over 300 iterations, 2 evaluation runs every 50; benchmarks/probe_val.py mdm 500
        # lr_img=.. lr_txt=..): 100/10: 36.8 (it 50), 30/3: 39.6 (it 50), 10/1: 40.1 (it 100, then
        # 38.9-39.6). 10/1 is the smallest value tried. Budgets from 500 up use it; 200 keeps the 100-pair
        # choice (not re-probed).
        if "cpu" in protocol.lineage and budget >= 500:
            return {"lr_img": 10.0, "lr_txt": 1.0}
        return {}

    # The poster's three ablation groups (Flickr8k, 100 pairs), plus the initial set before any step.
    ablations: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "data-init": {
            "Noise": {"data_init": "noise"},
            "Random": {"data_init": "random"},
            "K-means image": {"data_init": "image"},
            "K-means text": {"data_init": "text"},
            "Ours (joint)": {},
        },
        "model-init": {
            "Pre-trained": {"model_init": "pretrained"},
            "Fine-tuned": {"model_init": "fine-tuned"},
            "Weighted Sum": {"model_init": "weighted-sum"},
            "Ours (merge)": {},
        },
        "loss": {
            "L_NCE": {"loss": "nce"},
            "+L_agr": {"loss": "nce,agr"},
            "+L_dis": {"loss": "nce,dis"},
            "+both": {},
        },
        "optimisation": {"Initial set (0 iterations)": {"iterations": 0}, "MDM": {}},
    }

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        hp = self.hparams
        state = MDMState(ctx, hp, budget)
        provenance = {"data_init": hp.data_init, "init_indices": state.chosen, "model_init": hp.model_init}
        loop = DistillLoop(ctx, state.syn, hp.iterations, provenance, desc="mdm")
        out = loop.run(state.step, resumable=state)
        norms = state.grad_norms
        ctx.stats.extra.update(
            loss_terms={k: float(np.mean(v[-10:])) if v else None for k, v in state.history.items()},
            grad_norm_median=float(np.median(norms)) if norms else None,
            clipped_fraction=float(np.mean([g > hp.grad_clip for g in norms])) if norms else None,
        )
        return out


class MDMState:
    """Everything one MDM run holds: initial set, teacher sampler, real stream, optimiser; `step()` is
    one iteration (the benchmark times it against its floor)."""

    def __init__(self, ctx: DistillContext, hp: MDMHParams, budget: int) -> None:
        self.hp, self.ctx = hp, ctx
        self.terms = loss_terms(hp.loss)
        ws = ctx.workspace
        bank = ExpertBank(ctx.experts(), ctx.device)
        epochs = None if hp.max_epoch <= 0 else list(range(1, hp.max_epoch + 1))
        with ctx.timer("init"):
            feature_model = None
            if hp.data_init in ("joint", "image", "text"):
                sampler = TeacherSampler(ws, bank, "interpolation", hp.merge_alpha, epochs, ctx.seed + 1)
                feature_model = sampler.sample().eval()
            images, texts, self.chosen = initial_pairs(
                ws, budget, hp.data_init, ctx.seed, feature_model, hp.kmeans_iterations
            )
        self.teacher = TeacherSampler(ws, bank, hp.model_init, hp.merge_alpha, epochs, ctx.seed)
        self.syn = SyntheticSet(images, texts, ctx.device)
        self.optimiser = self.syn.sgd(hp.lr_img, hp.lr_txt, hp.momentum)
        kernels = {"agr", "dis"} & set(self.terms)
        self.real = RealBatches(ctx, hp.real_batch, hp.real_augment) if kernels else None
        self.generator = torch.Generator().manual_seed(ctx.seed + 29)
        self.temperature = ctx.protocol.model.temperature
        self.history: dict[str, list[float]] = {t: [] for t in self.terms}
        self.grad_norms: list[float] = []

    def state_dict(self) -> dict[str, Any]:
        """Everything later steps depend on (`distill/resume.py`): a resumed run steps as this one."""
        return {
            "syn": self.syn.state(),
            "optimiser": self.optimiser.state_dict(),
            "teacher": self.teacher.state_dict(),
            "real": None if self.real is None else self.real.state_dict(),
            "generator": rng_state(self.generator),
            "history": {k: list(v) for k, v in self.history.items()},
            "grad_norms": list(self.grad_norms),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.syn.load_state(state["syn"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.teacher.load_state_dict(state["teacher"])
        if self.real is not None:
            self.real.load_state_dict(state["real"])
        set_rng_state(self.generator, state["generator"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.grad_norms = list(state["grad_norms"])

    def step(self, _: int = 0) -> torch.Tensor:
        hp, syn = self.hp, self.syn
        model = self.teacher.sample()
        real_v = real_t = None
        if self.real is not None:
            real_images, real_texts = self.real.next()
            with torch.no_grad():
                real_v, real_t = model.encode_images(real_images), model.encode_texts(real_texts)
        idx = syn.sample(hp.syn_batch, self.generator).to(syn.device)
        syn_v, syn_t = model.encode_images(syn.images[idx]), model.encode_texts(syn.texts[idx])
        loss, parts = mdm_loss(real_v, real_t, syn_v, syn_t, hp, self.temperature)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.grad_norms.append(syn.clip_grad(hp.grad_clip))
        self.optimiser.step()
        for k, v in parts.items():
            self.history[k].append(v)
        return loss.detach()
