"""Expert trajectories: trained once per (protocol, dataset, training config), stored compactly, read fast.

An expert starts from the pretrained anchor (image encoder trainable) with a fresh text projection
head over the frozen text encoder's cached embeddings, and trains with symmetric InfoNCE at the
protocol's temperature, plain SGD (no momentum, no weight decay) as in the references' `buffer.py`.
Parameters are stored at epoch 0 and after every epoch up to `keep_epochs`.

Which parameters train is part of the configuration (`towers`): the default trains the image encoder
and the text head (MTT-VL, TESLA, LoRS, MDM); `frozen-backbone+heads` trains a fresh image head and the
text head on the frozen anchor (RepBlend's `buffer.py`), so its `image` vector is the image head alone.
Each is its own content-addressed set, built and read the same way (`ctx.experts(towers)`; the
`head_experts` artifact).

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

from mdd_bench.cache import atomic_write, atomic_write_json, cache_dir, stable_hash
from mdd_bench.digests import note_artifact
from mdd_bench.errors import MddError
from mdd_bench.evaluation.metrics import score
from mdd_bench.evaluation.training import Recipe, train_dual
from mdd_bench.locks import artifact_lock
from mdd_bench.models.dual import BACKBONE, FROZEN, TOWERS, DualEncoder
from mdd_bench.models.random_init import random_init_key
from mdd_bench.pretrained.anchors import anchor_key
from mdd_bench.workspace import Workspace
from mdd_bench.workspace.params import MODALITIES, flatten, layout, unflatten

EXPERTS_VERSION = 2  # 2: the image vector includes the image projection
MANIFEST = "manifest.json"
# Artifacts a method may declare (api.ARTIFACTS) -> the tower layout its experts train.
EXPERT_ARTIFACTS = {"experts": BACKBONE, "head_experts": FROZEN}


@dataclass(frozen=True)
class ExpertConfig:
    num_experts: int
    epochs: int
    keep_epochs: int
    lr: float
    batch_size: int
    real_augment: bool = False
    towers: str = BACKBONE  # which parameters train (models.dual.TOWERS)

    @classmethod
    def from_protocol(
        cls,
        protocol,
        num_experts: int | None = None,
        epochs: int | None = None,
        towers: str = BACKBONE,
    ) -> ExpertConfig:
        spec = protocol.experts
        epochs = epochs or spec.epochs
        if towers not in TOWERS:
            raise MddError(f"Unknown expert towers '{towers}'. Use one of: {', '.join(TOWERS)}.")
        config = cls(
            num_experts or spec.num_experts,
            epochs,
            min(spec.keep_epochs, epochs),
            spec.lr,
            spec.batch_size,
            spec.real_augment,
            towers,
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


def snapshot(model: DualEncoder) -> dict[str, torch.Tensor]:
    tensors = {"image": flatten(model, "image").cpu(), "text": flatten(model, "text").cpu()}
    for name, buf in model.image_encoder.named_buffers():
        tensors[f"image_buffer.{name}"] = buf.detach().cpu().clone()
    return {k: v.contiguous() for k, v in tensors.items()}


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

    @property
    def towers(self) -> str:
        """Which parameters these experts trained (manifests written before the option: the default)."""
        return str(self.manifest["training"].get("towers", BACKBONE))

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

    def buffers(self, expert: int, epoch: int) -> dict[str, torch.Tensor]:
        """The image encoder's buffers of one snapshot, by state-dict name."""
        with safe_open(str(self.path(expert, epoch)), framework="pt") as fh:
            return {
                "image_encoder." + key[len("image_buffer.") :]: fh.get_tensor(key)
                for key in fh.keys()  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith("image_buffer.")
            }

    def state_dict(self, expert: int, epoch: int) -> dict[str, torch.Tensor]:
        """A `DualEncoder` state dict (image tower parameters and buffers, text projection; with a frozen
        backbone, its buffers but not its parameters, which are the anchor's)."""
        image, text = self.flat(expert, epoch)
        layout = self.manifest["layout"]
        return {
            **unflatten(image, layout["image"]),
            **unflatten(text, layout["text"]),
            **self.buffers(expert, epoch),
        }

    def load_model(self, workspace: Workspace, expert: int, epoch: int) -> DualEncoder:
        image, text = self.flat(expert, epoch)
        layout = self.manifest["layout"]
        return workspace.model_from_flat(
            image, text, layout["image"], layout["text"], self.buffers(expert, epoch), towers=self.towers
        )

    @property
    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("*.safetensors"))


def snapshot_name(expert: int, epoch: int) -> str:
    return f"expert{expert:03d}_epoch{epoch:02d}.safetensors"


def experts_folder(workspace: Workspace, config: ExpertConfig) -> Path:
    """The set's folder: the protocol's name, the dataset, and a hash of everything that shapes a
    trajectory (which parameters train included; the default is left out of the hash so sets stored
    before the option keep their key). The name is cosmetic: a protocol inheriting (`base = ...`) an
    identical expert configuration finds its base's set instead of training the same experts again.
    """
    p, ds = workspace.protocol, workspace.dataset
    training = {k: v for k, v in asdict(config).items() if k != "num_experts"}
    if training["towers"] == BACKBONE:
        del training["towers"]
    image_init = {"anchor": anchor_key(p.image.source, p), "none": random_init_key(p.image.source)}
    text = [p.text.source, p.text.max_length, p.text.pooling]
    if p.text.weights == "random":  # only then: sets trained on the published encoders keep their keys
        text.append(random_init_key(p.text.source))
    key = stable_hash(
        [
            EXPERTS_VERSION,
            training,
            ds.fingerprint(),
            [p.data.resolution, p.data.mean, p.data.std],
            p.image.source,
            p.image.pretrained,
            image_init.get(p.image.pretrained),
            text,
            [p.model.temperature, p.model.projection_dim],
        ]
    )
    tag = "" if config.towers == BACKBONE else "-heads"
    folders = [cache_dir("experts") / f"{name}-{ds.name}{tag}-{key}" for name in p.lineage]
    return next((f for f in folders if f.exists()), folders[0])


def ensure_experts(
    workspace: Workspace,
    num_experts: int | None = None,
    epochs: int | None = None,
    progress: bool = True,
    towers: str = BACKBONE,
) -> ExpertStore:
    """Train whatever experts are missing (resuming an interrupted set) and return the store.

    The folder key covers everything that shapes a trajectory but the expert count, so asking for
    more experts later extends the same set.
    """
    config = ExpertConfig.from_protocol(workspace.protocol, num_experts, epochs, towers)
    for expert in range(config.num_experts):
        ensure_expert(workspace, expert, config, progress)
    folder = experts_folder(workspace, config)
    note_artifact(folder)
    return ExpertStore(folder)


def ensure_expert(workspace: Workspace, expert: int, config: ExpertConfig, progress: bool = True) -> None:
    """Train expert `expert` unless the manifest says it is complete.

    One lock per expert (two workers never train the same one; the second waits and then finds it
    done) and one short lock around each manifest update (read, add the entry, write), so the Ray
    executor can train the experts of one set in parallel tasks. An expert is marked complete only
    after its last snapshot is on disk.
    """
    folder = experts_folder(workspace, config)
    folder.mkdir(parents=True, exist_ok=True)
    if _is_complete(folder, expert):
        return
    with artifact_lock(folder / f"expert{expert:03d}"):
        if _is_complete(folder, expert):
            return
        for stale in folder.glob(f"expert{expert:03d}_*.safetensors"):
            stale.unlink()  # an interrupted expert is retrained from scratch
        for stale in folder.glob(f".expert{expert:03d}_*.tmp"):
            stale.unlink()  # half-written snapshots of a killed writer
        model = workspace.fresh_model(seed=10_000 + expert, towers=config.towers)
        model_layout = {m: layout(model, m) for m in MODALITIES}
        source = workspace.real_pairs("train", 20_000 + expert if config.real_augment else None)
        scores: dict[str, float] = {}

        def save(epoch: int, m: DualEncoder) -> None:
            if epoch in config.kept:
                write_snapshot(folder, expert, epoch, snapshot(m))

        save(0, model)
        scores["val_mean_epoch0"] = score(workspace, model, "val")["mean"]
        train_dual(
            model,
            source,
            config.recipe(),
            seed=10_000 + expert,
            on_epoch_end=lambda e, m: save(e + 1, m),
            progress=progress,
            desc=f"expert {expert + 1}/{config.num_experts}",
        )
        scores[f"val_mean_epoch{config.epochs}"] = score(workspace, model, "val")["mean"]
        entry = {"complete": True, "seed": 10_000 + expert, **scores}
        record_expert(folder, workspace, config, expert, entry, model_layout)


def write_snapshot(folder: Path, expert: int, epoch: int, tensors: dict[str, torch.Tensor]) -> Path:
    """One (expert, epoch) file: flat `image` and `text` vectors plus `image_buffer.*` (see `snapshot`)."""
    return atomic_write(folder / snapshot_name(expert, epoch), lambda p: save_file(tensors, str(p)))


def record_expert(
    folder: Path,
    workspace: Workspace,
    config: ExpertConfig,
    expert: int,
    entry: dict[str, Any],
    model_layout: dict[str, list[list[Any]]],
    manifest_extra: dict[str, Any] | None = None,
) -> None:
    """Add a finished expert to the manifest (read, add, write under the manifest's lock).

    Call it only after every snapshot of the expert is on disk: the entry marks it complete.
    """
    with artifact_lock(folder / MANIFEST):
        manifest = _read_manifest(folder) or _new_manifest(workspace, config)
        manifest.setdefault("layout", model_layout)
        manifest.update(manifest_extra or {})
        manifest["experts"][str(expert)] = entry
        atomic_write_json(folder / MANIFEST, manifest)


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _is_complete(folder: Path, expert: int) -> bool:
    entry = (_read_manifest(folder) or {"experts": {}})["experts"].get(str(expert))
    return bool(entry and entry["complete"])


def _new_manifest(workspace: Workspace, config: ExpertConfig) -> dict:
    return {
        "version": EXPERTS_VERSION,
        "protocol": workspace.protocol.name,
        "dataset": workspace.dataset.name,
        "training": asdict(config) | {"momentum": 0.0, "weight_decay": 0.0, "loss": "infonce"},
        "kept_epochs": config.kept,
        "dropped_epochs": config.dropped,
        "experts": {},
    }
