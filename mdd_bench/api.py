"""The method-plugin interface: `Method`, its hyper-parameters, and the context it distils in.

A method never builds its own data loaders, encoders or experts: `DistillContext` hands them over,
loading each shared artifact lazily on first use. Methods are found by name through the entry-point
group `mdd_bench.methods` (see `registry.py`), the built-in ones included.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data.pairs import PairDataset
from .distilled import DistilledSet
from .errors import MddError, did_you_mean
from .protocol import Protocol

# Shared artifacts a method may declare; the runner prepares them before timing the distillation.
ARTIFACTS = ("text_features", "anchor", "reference_model", "experts")


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
    artifacts: ClassVar[tuple[str, ...]] = ()
    hparams_class: ClassVar[type[HParams]] = HParams
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    # True when the output does not depend on the distillation seed: `mdd-bench run` then runs the
    # first seed only (and the report says so) instead of repeating identical work.
    deterministic: ClassVar[bool] = False

    def __init__(self, hparams: HParams | None = None) -> None:
        self.hparams = hparams if hparams is not None else self.hparams_class()

    @classmethod
    def for_protocol(cls, protocol: Protocol, overrides: dict[str, str] | None = None) -> Method:
        """The method with its defaults for `protocol`, then `--set name.key=value` overrides."""
        values: dict[str, Any] = dict(cls.defaults.get(protocol.name, {}))
        fields = {f.name: f for f in dataclasses.fields(cls.hparams_class)}
        hints = typing.get_type_hints(cls.hparams_class)
        for key, raw in (overrides or {}).items():
            if key not in fields:
                raise MddError(
                    f"Method '{cls.name}' has no hyper-parameter '{key}'.{did_you_mean(key, fields)}"
                )
            values[key] = _parse_value(raw, hints[key], f"{cls.name}.{key}")
        return cls(cls.hparams_class(**values))

    def distill(self, ctx: DistillContext, budget: int) -> DistilledSet:
        raise NotImplementedError

    @classmethod
    def missing_artifacts(cls) -> list[str]:
        """Declared artifacts this version of mdd-bench cannot build (a plugin ahead of the harness)."""
        return [a for a in cls.artifacts if a not in ARTIFACTS]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "hparams": dataclasses.asdict(self.hparams)}


def _parse_value(raw: str, kind: Any, where: str) -> Any:
    if not isinstance(raw, str):
        return raw
    base = kind
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if base is bool:
            if raw.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"true", "1", "yes"}
        if base in (int, float, str):
            return base(raw)
    except ValueError:
        raise MddError(f"--set {where}={raw}: expected a {getattr(base, '__name__', base)}.") from None
    return raw


@dataclass
class DistillStats:
    """What a method reports about its own run (the runner adds wall time and memory)."""

    iterations: int = 0
    iters_to_best: int | None = None
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
        from .evaluate import Evaluator

        self.protocol = protocol
        self.dataset = dataset
        self.seed = seed
        self.device = torch.device(device)
        self.progress_enabled = progress
        self.evaluator = Evaluator(protocol, dataset, progress)
        self.rng = np.random.default_rng(seed)
        self.torch_generator = torch.Generator().manual_seed(seed)
        self.stats = DistillStats()
        self._reference = None
        self._reference_model: nn.Module | None = None
        self._experts = None

    # -------------------------------------------------------------- data
    def text_embeddings(self, split: str = "train", encoder: str | None = None) -> np.ndarray:
        """Frozen caption embeddings of a split (source text encoder unless named)."""
        return self.evaluator.text_embeddings(split, encoder)

    def real_pairs(self, indices: np.ndarray | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised images, caption embeddings) of training pairs `indices`."""
        from .training import RealPairs

        source = RealPairs(self.dataset.train, self.text_embeddings("train"), self.protocol)
        return source.batch(torch.as_tensor(np.asarray(indices, dtype=np.int64)))

    def coreset(self, indices: np.ndarray | list[int], **provenance: Any) -> DistilledSet:
        """A DistilledSet made of real training pairs, recording which ones."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(np.unique(idx)) != len(idx):
            raise ValueError("a coreset must not repeat a pair")
        images, texts = self.real_pairs(idx)
        return DistilledSet(images, texts, {}, {"real_indices": idx.tolist(), **provenance})

    # -------------------------------------------------------------- models and artifacts
    def image_encoder(self, name: str | None = None) -> nn.Module:
        """A fresh copy of the protocol's pretrained image encoder (the anchor under `cpu`)."""
        from .anchors import pretrained_image_encoder

        return pretrained_image_encoder(
            name or self.protocol.image.source, self.protocol, self.progress_enabled
        )

    def text_encoder(self, name: str | None = None):
        from .models import create_text_encoder

        return create_text_encoder(name or self.protocol.text.source, self.protocol.text.max_length)

    def reference(self):
        """The full-data upper-bound run (trained model + forgetting statistics)."""
        if self._reference is None:
            from .references import full_data_reference

            self._reference = full_data_reference(self.evaluator, self.progress_enabled)
        return self._reference

    def reference_model(self) -> nn.Module:
        if self._reference_model is None:
            self._reference_model = self.reference().load_model(self.evaluator)
        return self._reference_model

    def experts(self):
        """The protocol's expert trajectories (`ExpertStore`), trained on first need."""
        if self._experts is None:
            from .experts import ensure_experts

            self._experts = ensure_experts(self.evaluator, progress=self.progress_enabled)
        return self._experts

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
            elif artifact == "experts":
                self.experts()

    # -------------------------------------------------------------- evaluation hook and progress
    def evaluate_on_val(self, distilled: DistilledSet, track: str = "hard", repetitions: int = 1) -> float:
        """Mean recall on the val split (source architectures) for choosing an iteration; never test."""
        result = self.evaluator.evaluate(distilled, "source", track, repetitions, self.seed, split="val")
        return result.source().mean["mean"]

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
