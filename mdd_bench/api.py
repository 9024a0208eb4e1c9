"""The method-plugin interface: `Method`, its hyper-parameters, and the context it distils in.

A method never builds its own data loaders, encoders or experts: `DistillContext` hands them over,
loading each shared artifact lazily on first use. Methods are found by name through the entry-point
group `mdd_bench.methods` (see `registry.py`), the built-in ones included.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn
from tqdm.auto import tqdm

from mdd_bench.data.pairs import PairDataset
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError, did_you_mean
from mdd_bench.models.dual import BACKBONE
from mdd_bench.protocol import Protocol
from mdd_bench.search_space import SearchSpace, check_space
from mdd_bench.tuned import TunedEntry, check_entry, resolve_tuned

# Shared artifacts a method may declare; the runner prepares them before timing the distillation.
# `experts`: trajectories of the image encoder and text head; `head_experts`: of an image head and the
# text head on the frozen image encoder (RepBlend's).
ARTIFACTS = ("text_features", "anchor", "reference_model", "experts", "head_experts")


@dataclass
class HParams:
    """Base of every method's hyper-parameters (a dataclass with defaults)."""


class Method:
    """Subclass, set the class attributes, implement `distill`.

    `defaults` maps a protocol name to overrides of the HParams defaults, so one method can carry
    its paper settings and its cpu settings side by side.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    # What describes the method lives on it and goes into every result: how tables spell it, the paper
    # it reproduces, and a version bumped whenever its algorithm changes (so two results with the same
    # version were made by the same algorithm).
    display_name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    version: ClassVar[int] = 1
    artifacts: ClassVar[tuple[str, ...]] = ()
    hparams_class: ClassVar[type[HParams]] = HParams
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # True when the output does not depend on the distillation seed: `mdd-bench run` then runs the
    # first seed only (and the report says so) instead of repeating identical work.
    deterministic: ClassVar[bool] = False
    # DSA on the native track: what the method's reference evaluation does (True: every batch of the
    # distilled images is augmented with DSA; False: no augmentation); None: the protocol's recipe of
    # each encoder pair, as on the hard track. Each distilled set carries it as provenance `eval_dsa`
    # (`run/cell.py`), which `Evaluator.recipe_for` reads.
    native_dsa: ClassVar[bool | None] = None
    # Ablation groups for `mdd-bench ablate`: group -> variant label -> hyper-parameter overrides, in
    # display order. A variant with no overrides is the method as configured.
    ablations: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    # What `mdd-bench tune` may vary, per protocol name (looked up along the lineage like `defaults`):
    # hyper-parameter -> `Float`, `Int` or `Choice` (`mdd_bench.search_space`). Empty: nothing to tune,
    # the method gets 0 trials.
    search_space: ClassVar[dict[str, SearchSpace]] = {}

    def __init__(self, hparams: HParams | None = None) -> None:
        self.hparams = hparams if hparams is not None else self.hparams_class()
        # The tuned entry behind these settings (`for_protocol` sets it), recorded in every result.
        self.tuning: TunedEntry | None = None

    @classmethod
    def search_space_for(cls, protocol: Protocol) -> SearchSpace:
        """The space of the nearest protocol in the lineage that declares one, checked; {} if none."""
        for name in protocol.lineage:
            if name in cls.search_space:
                space = cls.search_space[name]
                check_space(cls.name, cls.hparams_class, space, protocol)
                return space
        return {}

    @classmethod
    def for_protocol(
        cls,
        protocol: Protocol,
        overrides: dict[str, str] | None = None,
        budget: int | None = None,
        tuned: str | Path | None = "packaged",
    ) -> Method:
        """The method with its defaults for `protocol` (and the cell's `budget`), its tuned values, then
        `--set` overrides.

        Defaults are looked up along the protocol's lineage (its name, then the packaged protocol it
        inherits from with `base = ...`), then `cell_defaults` (settings the papers tabulate per dataset
        and budget), then the values `mdd-bench tune` chose for this (dataset, method, budget) (`tuned`:
        the packaged file of the lineage, a file path, or None for none). Everything is validated
        against the hyper-parameter dataclass's types (pydantic), so a typo or a wrong type is one line.
        """
        values: dict[str, Any] = {}
        for name in reversed(protocol.lineage):
            values.update(cls.defaults.get(name, {}))
        if budget is not None:
            values.update(cls.cell_defaults(protocol, budget))
        _check_keys(cls, values, "defaults")
        entry = None
        tuned_file = resolve_tuned(protocol, tuned)
        if tuned_file is not None:
            entry = tuned_file.get(protocol.data.dataset, cls.name, budget)
            if entry is not None:
                check_entry(entry, protocol)
                _check_keys(cls, entry.values, f"tuned values in {tuned_file.source}")
                values.update(entry.values)
        overrides = overrides or {}
        _check_keys(cls, overrides, "--set")
        method = cls(validate_hparams(cls, {**values, **overrides}))
        method.tuning = entry
        return method

    @classmethod
    def cell_defaults(cls, protocol: Protocol, budget: int) -> dict[str, Any]:
        """Overrides for one (protocol's dataset, budget) cell on top of `defaults`; none by default."""
        return {}

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        raise NotImplementedError

    @classmethod
    def missing_artifacts(cls) -> list[str]:
        """Declared artifacts this version of mdd-bench cannot build (a plugin ahead of the harness)."""
        return [a for a in cls.artifacts if a not in ARTIFACTS]

    @classmethod
    def info(cls) -> dict[str, Any]:
        """The method's metadata as a result records it (`method_info`)."""
        return {"display_name": cls.display_name or cls.name, "paper": cls.paper, "version": cls.version}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "hparams": dataclasses.asdict(self.hparams)}


def _check_keys(cls: type[Method], values: dict[str, Any], where: str) -> None:
    fields = [f.name for f in dataclasses.fields(cls.hparams_class)]
    for key in values:
        if key not in fields:
            raise MddError(
                f"Method '{cls.name}' has no hyper-parameter '{key}' ({where}).{did_you_mean(key, fields)}"
            )


def validate_hparams(cls: type[Method], values: dict[str, Any]) -> HParams:
    """Typed hyper-parameters from defaults and `--set` strings ("0.5", "true", "3" are converted)."""
    try:
        return TypeAdapter(cls.hparams_class).validate_python(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise MddError(f"--set {cls.name}.{key}={first.get('input')}: {first['msg']}.") from None


@dataclass
class DistillStats:
    """What a method reports about its own run (the runner adds wall time and memory)."""

    iterations: int = 0
    iters_to_best: int | None = None
    time_per_iter_s: float | None = None  # median step time, evaluations excluded (DistillLoop sets it)
    resumed_s: float = 0.0  # loop seconds earlier processes spent before the check this run resumed from
    extra: dict[str, Any] = field(default_factory=dict)


class DistillContext:
    """Everything a method may use. Artifacts are built on first access and cached on disk."""

    def __init__(
        self,
        protocol: Protocol,
        dataset: PairDataset,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        from mdd_bench.evaluation.evaluator import Evaluator
        from mdd_bench.workspace import Workspace

        self.protocol = protocol
        self.dataset = dataset
        self.seed = seed
        self.workspace = Workspace(protocol, dataset, device, progress)
        self.device = self.workspace.device
        self.progress_enabled = progress
        self.evaluator = Evaluator(self.workspace)
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)
        self.stats = DistillStats()
        # Selection: the val tracks a run chooses its iterations on (None: every track whose recipe
        # differs for the set; the tuner asks for its objective's only), a callback after each val check
        # (iteration, {track: score}; the tuner's pruner raises from it), and what the loop chose: the
        # set per track beside the returned one, and the initial (iteration-0) set.
        self.select_tracks: tuple[str, ...] | None = None
        self.check_hook: Callable[[int, dict[str, float]], None] | None = None
        # Where the loop saves each check so a stopped run resumes (`distill/resume.py`); the runner
        # sets it for grid cells, tuning trials run without. A `distill.resume.Checkpoint` (the layer above
        # this one, so not named in the annotation).
        self.checkpoint: Any = None
        self.selected: dict[str, DistilledSet] = {}
        self.initial: DistilledSet | None = None
        self._reference = None
        self._reference_model: nn.Module | None = None
        self._experts: dict[str, Any] = {}

    # -------------------------------------------------------------- data
    def text_embeddings(self, split: str = "train", encoder: str | None = None) -> np.ndarray:
        """Frozen caption embeddings of a split (source text encoder unless named), as numpy on the CPU."""
        return self.workspace.text_embeddings(split, encoder)

    def real_pairs(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised images, caption embeddings) of training pairs `indices`, on the context's device."""
        images, texts = self.workspace.real_pairs("train").batch(
            torch.as_tensor(np.asarray(indices, dtype=np.int64))
        )
        return images.to(self.device), texts.to(self.device)

    def coreset(self, indices: np.ndarray | list[int], **provenance: Any) -> DistilledSet:
        """A DistilledSet made of real training pairs, recording which ones."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(np.unique(idx)) != len(idx):
            raise ValueError("a coreset must not repeat a pair")
        images, texts = self.real_pairs(idx)
        return DistilledSet(images, texts, {}, {"real_indices": idx.tolist(), **provenance})

    # -------------------------------------------------------------- models and artifacts
    def image_encoder(self, name: str | None = None) -> nn.Module:
        """A fresh copy of the protocol's pretrained image encoder (the anchor under `cpu`), on the device."""
        return self.workspace.image_encoder(name).to(self.device)

    def fresh_model(self, seed: int | None = None, image_encoder: str | None = None) -> nn.Module:
        """A new pretrained two-tower model on the device (head init from `seed`, default the cell's)."""
        return self.workspace.fresh_model(self.seed if seed is None else seed, image_encoder)

    def text_encoder(self, name: str | None = None):
        from mdd_bench.models import create_text_encoder
        from mdd_bench.pretrained.text_student import text_encoder_weights

        name = name or self.protocol.text.source
        random = self.protocol.text.weights == "random"
        weights = None if random else text_encoder_weights(name)
        return create_text_encoder(name, self.protocol.text.max_length, str(self.device), weights, random)

    def reference(self):
        """The full-data reference run (trained model + forgetting statistics).

        Methods use its first repetition only (its model and the forgetting statistics recorded while it
        trained), so only that one is trained on their behalf; the upper bound's further repetitions are
        trained on demand (`mdd-bench run --full-data-repetitions N`, `mdd-bench eval --full-data`) and the
        report says how many the full-data row has.
        """
        if self._reference is None:
            from mdd_bench.artifacts.references import full_data_reference

            self._reference = full_data_reference(self.workspace, self.progress_enabled, repetitions=1)
        return self._reference

    def reference_model(self) -> nn.Module:
        if self._reference_model is None:
            self._reference_model = self.reference().load_model(self.workspace)
        return self._reference_model

    def experts(self, towers: str = BACKBONE):
        """The protocol's expert trajectories (`ExpertStore`), trained on first need.

        `towers` says which parameters they train: the image encoder and text head (default), or with
        "frozen-backbone+heads" an image head and the text head on the frozen encoder (a set of its own).
        """
        if towers not in self._experts:
            from mdd_bench.artifacts.experts import ensure_experts

            self._experts[towers] = ensure_experts(
                self.workspace, progress=self.progress_enabled, towers=towers
            )
        return self._experts[towers]

    def prepare(self, artifacts: tuple[str, ...]) -> None:
        """Build the declared artifacts up front, so distillation time excludes them."""
        for artifact in artifacts:
            if artifact not in ARTIFACTS:
                raise MddError(f"Unknown artifact '{artifact}'. Known: {', '.join(ARTIFACTS)}.")
            if artifact == "text_features":
                self.text_embeddings("train")
            elif artifact == "anchor":
                self.image_encoder()
            elif artifact == "reference_model":
                self.reference_model()
            elif artifact in ("experts", "head_experts"):
                from mdd_bench.artifacts.experts import EXPERT_ARTIFACTS

                self.experts(EXPERT_ARTIFACTS[artifact])

    # -------------------------------------------------------------- evaluation hook and progress
    def evaluate_on_val(self, distilled: DistilledSet, track: str = "hard", repetitions: int = 1) -> float:
        """Mean recall on the val split (source architectures) for choosing an iteration; never test."""
        return float(np.mean(self.val_runs(distilled, track, repetitions)))

    def val_runs(
        self, distilled: DistilledSet, track: str = "hard", repetitions: int = 1, first: int = 0
    ) -> list[float]:
        """Mean recall of each val run `first` .. `first + repetitions - 1`: the same seeds at every call,
        so two checks' scores are paired and a re-score adds runs to those a check has."""
        result = self.evaluator.evaluate(
            distilled, "source", track, repetitions, self.seed, split="val", first_repetition=first
        )
        return [float(run["mean"]) for run in result.source().runs]

    @contextmanager
    def progress(self, total: int, desc: str) -> Iterator[tqdm]:
        bar = tqdm(total=total, desc=desc, disable=not self.progress_enabled, leave=False)
        try:
            yield bar
        finally:
            bar.close()

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stats.extra[f"{name}_s"] = (
                self.stats.extra.get(f"{name}_s", 0.0) + time.perf_counter() - start
            )
