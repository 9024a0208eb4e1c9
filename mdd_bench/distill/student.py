"""A functional student: the protocol's two-tower model run from flat per-modality parameter vectors.

Trajectory matching differentiates through SGD steps of a student, so the student's parameters
must be ordinary tensors in a graph, not module parameters. One persistent `DualEncoder` supplies the
architecture (and its buffers); `torch.func.functional_call` runs it at any flat vectors laid out as
the expert store's (`workspace.named_parameters` order), so expert checkpoints plug in directly.

With a frozen backbone (`towers = frozen-backbone+heads`) the flat vectors are the two heads; the
backbone is a fixed function of the pixels (`backbone_features`), whose output the heads take
(`encode(..., from_features=True)`), so a method can work on the heads' inputs (RepBlend blends them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mdd_bench.errors import MddError
from mdd_bench.workspace.params import MODALITIES, named_parameters

Flat = dict[str, torch.Tensor]  # modality -> flat parameter vector


class FunctionalStudent:
    def __init__(self, model: nn.Module, layout: dict[str, Sequence[Sequence[Any]]] | None = None) -> None:
        """`layout` (the expert store's) must match the model's own, name for name and shape for shape."""
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        own = {m: [[n, list(p.shape)] for n, p in named_parameters(model, m)] for m in MODALITIES}
        if layout is not None and own != {m: [[n, list(s)] for n, s in layout[m]] for m in MODALITIES}:
            raise MddError("The experts' parameter layout differs from this protocol's model. Retrain them.")
        self.entries = {m: [(n, torch.Size(s)) for n, s in own[m]] for m in MODALITIES}
        self.sizes = {m: [s.numel() for _, s in self.entries[m]] for m in MODALITIES}
        self.temperature = float(getattr(model, "temperature", 0.07))

    def size(self, modality: str) -> int:
        return sum(self.sizes[modality])

    def initial(self) -> Flat:
        """The model's own parameters as flat vectors (detached copies)."""
        return {
            m: torch.cat([p.detach().reshape(-1) for _, p in named_parameters(self.model, m)]).clone()
            for m in MODALITIES
        }

    def params(self, theta: Flat) -> dict[str, torch.Tensor]:
        """State-dict names -> views of the flat vectors (gradients flow back into the vectors).

        One `split` per vector, not a slice per tensor: a slice's backward writes its gradient into a
        zero vector of the whole flat size and autograd then sums one such vector per tensor, where the
        split's backward concatenates the pieces once (the same values, no extra additions).
        """
        out: dict[str, torch.Tensor] = {}
        for modality, entries in self.entries.items():
            flat = theta[modality]
            if flat.numel() != self.size(modality):
                raise MddError(
                    f"A flat '{modality}' vector has {flat.numel()} values; "
                    f"the model needs {self.size(modality)}."
                )
            pieces = torch.split(flat, self.sizes[modality])
            for (name, shape), piece in zip(entries, pieces, strict=True):
                out[name] = piece.view(shape)
        return out

    def encode(
        self, theta: Flat, images: torch.Tensor, texts: torch.Tensor, from_features: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm image and text features of the model at `theta`; with `from_features`, `images`
        are the frozen backbone's features and only the heads run."""
        if from_features:
            self._check_frozen()
        return torch.func.functional_call(
            self.model, self.params(theta), (images, texts), {"from_features": from_features}
        )

    def logits(
        self,
        theta: Flat,
        images: torch.Tensor,
        texts: torch.Tensor,
        scale: float | None = None,
        from_features: bool = False,
    ) -> torch.Tensor:
        """scale * cos(image_i, text_j); the scale defaults to 1 / temperature (the experts' scale)."""
        image_features, text_features = self.encode(theta, images, texts, from_features)
        return (1.0 / self.temperature if scale is None else scale) * image_features @ text_features.T

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen image encoder's pooled features (its own fixed parameters, eval mode); the graph
        to `images` is kept when they require grad."""
        self._check_frozen()
        return self.model.image_encoder(images)

    def _check_frozen(self) -> None:
        if any(not n.startswith("image_projection.") for n, _ in self.entries["image"]):
            raise MddError(
                "This student trains its image encoder: its image features depend on theta, so they "
                "cannot be computed apart from it (only a frozen-backbone student's can)."
            )
