"""Expert trajectories: trained once per (protocol, dataset, training config), stored compactly, read fast.

An expert starts from the pretrained anchor (image encoder trainable) with a fresh text projection
head over the frozen text encoder's cached embeddings, and trains with symmetric InfoNCE at the
protocol's temperature, plain SGD (no momentum, no weight decay) as in the references' `buffer.py`.
Parameters are stored at epoch 0 and after every epoch up to `keep_epochs`.

Storage: one safetensors file per (expert, epoch) holding two flat float32 vectors, `image` (the
image encoder's parameters, in `named_parameters` order) and `text` (the projection head's), plus the
image encoder's buffers. Files are memory-mapped on read, so a start/target pair costs milliseconds,
where the reference implementation re-reads a 1.76 GB file every iteration. A manifest records the
layout, the kept and dropped epochs, and which experts are complete; an expert interrupted midway is
retrained from scratch, finished ones are kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .anchors import anchor_key, pretrained_image_encoder
from .cache import atomic_write, atomic_write_json, cache_dir, stable_hash
from .errors import MddError
from .evaluate import Evaluator
from .models.dual import DualEncoder
from .training import RealPairs, Recipe, fresh_model, train_dual

EXPERTS_VERSION = 2  # 2: the image vector includes the image projection
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExpertConfig:
    num_experts: int
    epochs: int
    keep_epochs: int
    lr: float
    batch_size: int
    real_augment: bool = False

    @classmethod
    def from_protocol(
        cls, protocol, num_experts: int | None = None, epochs: int | None = None
    ) -> ExpertConfig:
        spec = protocol.experts
        epochs = epochs or spec.epochs
        config = cls(
            num_experts or spec.num_experts,
            epochs,
            min(spec.keep_epochs, epochs),
            spec.lr,
            spec.batch_size,
            spec.real_augment,
        )
        if config.num_experts < 1 or config.epochs < 1:
            raise MddError("Experts need --num-experts >= 1 and --epochs >= 1.")
        return config

    @property
    def kept(self) -> list[int]:
        return list(range(self.keep_epochs + 1))

    @property
    def dropped(self) -> list[int]:
        return list(range(self.keep_epochs + 1, self.epochs + 1))

    def recipe(self) -> Recipe:
        return Recipe(
            epochs=self.epochs,
            lr_img=self.lr,
            lr_txt=self.lr,
            batch_size=self.batch_size,
            momentum=0.0,
            weight_decay=0.0,
            lr_decay_epoch=None,
        )


# The modalities of a flat snapshot: the image tower (encoder + optional image head) and the text head.
MODALITIES = {"image": ("image_encoder", "image_projection"), "text": ("text_projection",)}


def _named(model: DualEncoder, modality: str) -> list[tuple[str, torch.Tensor]]:
    """Parameters of one modality with their `DualEncoder` state-dict names."""
    return [
        (f"{part}.{n}", p)
        for part in MODALITIES[modality]
        for n, p in getattr(model, part).named_parameters()
    ]


def _flatten(model: DualEncoder, modality: str) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float() for _, p in _named(model, modality)])


def _layout(model: DualEncoder, modality: str) -> list[list[Any]]:
    return [[name, list(p.shape)] for name, p in _named(model, modality)]


def snapshot(model: DualEncoder) -> dict[str, torch.Tensor]:
    tensors = {"image": _flatten(model, "image"), "text": _flatten(model, "text")}
    for name, buf in model.image_encoder.named_buffers():
        tensors[f"image_buffer.{name}"] = buf.detach().clone()
    return {k: v.contiguous() for k, v in tensors.items()}


def unflatten(flat: torch.Tensor, layout: list[list[Any]], prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, shape in layout:
        numel = int(torch.Size(shape).numel())
        out[f"{prefix}{name}"] = flat[offset : offset + numel].view(shape)
        offset += numel
    if offset != flat.numel():
        raise MddError(f"Expert vector has {flat.numel()} values but the layout needs {offset}.")
    return out


class ExpertStore:
    """Read access to a trained set of expert trajectories."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = json.loads((folder / MANIFEST).read_text())

    @property
    def num_experts(self) -> int:
        return len(self.complete_experts)

    @property
    def complete_experts(self) -> list[int]:
        return sorted(int(i) for i, e in self.manifest["experts"].items() if e["complete"])

    @property
    def epochs(self) -> list[int]:
        """Epochs stored for every expert (0 = the anchor with a fresh head)."""
        return list(self.manifest["kept_epochs"])

    def path(self, expert: int, epoch: int) -> Path:
        if expert not in self.complete_experts:
            raise MddError(f"Expert {expert} is not trained (have {self.complete_experts}).")
        if epoch not in self.epochs:
            raise MddError(
                f"Epoch {epoch} of the experts is not stored (kept {self.epochs}; "
                f"dropped {self.manifest['dropped_epochs']}). Raise keep_epochs in the protocol."
            )
        return self.folder / snapshot_name(expert, epoch)

    def flat(self, expert: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image vector, text-head vector) of one snapshot, memory-mapped."""
        with safe_open(str(self.path(expert, epoch)), framework="pt") as fh:
            return fh.get_tensor("image"), fh.get_tensor("text")

    def state_dict(self, expert: int, epoch: int) -> dict[str, torch.Tensor]:
        """A `DualEncoder` state dict (image encoder parameters and buffers, text projection)."""
        with safe_open(str(self.path(expert, epoch)), framework="pt") as fh:
            state = unflatten(fh.get_tensor("image"), self.manifest["layout"]["image"], "")
            state.update(unflatten(fh.get_tensor("text"), self.manifest["layout"]["text"], ""))
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith("image_buffer."):
                    state["image_encoder." + key[len("image_buffer.") :]] = fh.get_tensor(key)
        return state

    def load_model(self, evaluator: Evaluator, expert: int, epoch: int) -> DualEncoder:
        protocol = evaluator.protocol
        encoder = pretrained_image_encoder(protocol.image.source, protocol, progress=False)
        model = fresh_model(encoder, evaluator.text_embeddings("train").shape[1], protocol, seed=0)
        model.load_state_dict(self.state_dict(expert, epoch))
        return model.eval()

    @property
    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))


def snapshot_name(expert: int, epoch: int) -> str:
    return f"expert{expert:03d}_epoch{epoch:02d}.safetensors"


def experts_folder(evaluator: Evaluator, config: ExpertConfig) -> Path:
    p, ds = evaluator.protocol, evaluator.dataset
    training = {k: v for k, v in asdict(config).items() if k != "num_experts"}
    key = stable_hash(
        [
            EXPERTS_VERSION,
            training,
            ds.fingerprint(),
            [p.data.resolution, p.data.mean, p.data.std],
            p.image.source,
            p.image.pretrained,
            anchor_key(p.image.source, p) if p.image.pretrained == "anchor" else None,
            [p.text.source, p.text.max_length, p.text.pooling],
            [p.model.temperature, p.model.projection_dim],
        ]
    )
    return cache_dir("experts") / f"{p.name}-{ds.name}-{key}"


def ensure_experts(
    evaluator: Evaluator,
    num_experts: int | None = None,
    epochs: int | None = None,
    progress: bool = True,
) -> ExpertStore:
    """Train whatever experts are missing (resuming an interrupted set) and return the store.

    The folder key covers everything that shapes a trajectory but the expert count, so asking for
    more experts later extends the same set.
    """
    protocol, dataset = evaluator.protocol, evaluator.dataset
    config = ExpertConfig.from_protocol(protocol, num_experts, epochs)
    folder = experts_folder(evaluator, config)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    train_emb = evaluator.text_embeddings("train")
    if manifest is None:
        manifest = {
            "version": EXPERTS_VERSION,
            "protocol": protocol.name,
            "dataset": dataset.name,
            "training": asdict(config) | {"momentum": 0.0, "weight_decay": 0.0, "loss": "infonce"},
            "kept_epochs": config.kept,
            "dropped_epochs": config.dropped,
            "experts": {},
        }
    recipe = config.recipe()
    for expert in range(config.num_experts):
        entry = manifest["experts"].get(str(expert))
        if entry and entry["complete"]:
            continue
        for stale in folder.glob(f"expert{expert:03d}_*.safetensors"):
            stale.unlink()  # an interrupted expert is retrained from scratch
        encoder = pretrained_image_encoder(protocol.image.source, protocol, progress)
        model = fresh_model(encoder, train_emb.shape[1], protocol, seed=10_000 + expert)
        manifest.setdefault("layout", {m: _layout(model, m) for m in MODALITIES})
        augment_seed = 20_000 + expert if config.real_augment else None
        source = RealPairs(dataset.train, train_emb, protocol, augment_seed)
        scores: dict[str, float] = {}

        def save(epoch: int, m: DualEncoder, expert: int = expert) -> None:
            if epoch in config.kept:
                tensors = snapshot(m)
                atomic_write(folder / snapshot_name(expert, epoch), lambda p: save_file(tensors, str(p)))

        save(0, model)
        scores["val_mean_epoch0"] = evaluator.score(model, "val")["mean"]
        train_dual(
            model,
            source,
            recipe,
            seed=10_000 + expert,
            on_epoch_end=lambda e, m: save(e + 1, m),
            progress=progress,
            desc=f"expert {expert + 1}/{config.num_experts}",
        )
        scores[f"val_mean_epoch{config.epochs}"] = evaluator.score(model, "val")["mean"]
        manifest["experts"][str(expert)] = {"complete": True, "seed": 10_000 + expert, **scores}
        atomic_write_json(manifest_path, manifest)
    return ExpertStore(folder)
