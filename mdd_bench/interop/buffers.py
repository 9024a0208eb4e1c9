"""The references' expert buffers -> the protocol's expert store, which `ctx.experts()` then reads.

MTT-VL's and LoRS's `buffer.py` write, per expert, `img_replay_buffer_{n}.pt` and
`txt_replay_buffer_{n}.pt`. Each holds a list of trajectories (one per file: the list is reset after
every save); a trajectory is the list of per-epoch snapshots (epoch 0 = the pretrained start); a
snapshot is the list of parameter tensors in `.parameters()` order, of the whole image encoder (img) or
of the text projection head (txt, 6 tensors). Every kept snapshot is checked tensor by tensor against the
protocol's model, flattened in the same order, and written as `experts.py` writes a trained expert, into
the folder the protocol's expert key names. The files hold no buffers: NFNets have none; an encoder
with BatchNorm statistics gets its pretrained ones, and the import says so.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mdd_bench.artifacts.experts import (
    MANIFEST,
    ExpertConfig,
    ExpertStore,
    experts_folder,
    record_expert,
    write_snapshot,
)
from mdd_bench.errors import MddError, unknown
from mdd_bench.interop.torchfile import load_pt
from mdd_bench.locks import artifact_lock
from mdd_bench.models.text import text_feature_dim
from mdd_bench.workspace import Workspace
from mdd_bench.workspace.params import MODALITIES, flatten, layout

SOURCES = ("lors", "mtt-vl")
_FILE = re.compile(r"^(img|txt)_replay_buffer_(\d+)\.pt$")

Snapshot = list[torch.Tensor]
Trajectory = list[Snapshot]


@dataclass
class ExpertImport:
    folder: Path
    experts: list[int]
    kept_epochs: list[int]
    snapshots_in_files: int
    notes: list[str] = field(default_factory=list)


def buffer_files(directory: Path) -> list[tuple[int, Path, Path]]:
    """(n, img file, txt file) of every expert in `directory`, by n."""
    if not directory.is_dir():
        raise MddError(f"Expert folder '{directory}' does not exist.")
    found: dict[str, dict[int, Path]] = {"img": {}, "txt": {}}
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match:
            found[match.group(1)][int(match.group(2))] = path
    if not found["img"] and not found["txt"]:
        raise MddError(
            f"No img_replay_buffer_N.pt / txt_replay_buffer_N.pt in '{directory}'. Pass the folder "
            "buffer.py wrote (e.g. buffer/flickr/nfnet_bert/InfoNCE)."
        )
    for kind, other in (("img", "txt"), ("txt", "img")):
        alone = sorted(set(found[kind]) - set(found[other]))
        if alone:
            raise MddError(
                f"'{found[kind][alone[0]].name}' has no {other}_replay_buffer_{alone[0]}.pt beside it; "
                "an expert needs both files."
            )
    return [(n, found["img"][n], found["txt"][n]) for n in sorted(found["img"])]


def check_buffer_files(directory: Path) -> list[tuple[int, Path, Path]]:
    """`buffer_files`, each pair read and its layout checked: what the command does before it loads
    data or builds (pretrains) the protocol's model, so a bad file fails at once. The files are mapped,
    not read, so this costs little beside the import's own passes."""
    files = buffer_files(directory)
    for _, img_path, txt_path in files:
        _load_pair(img_path, txt_path)
    return files


def trajectories(obj: Any, path: Path) -> list[Trajectory]:
    """A file's trajectories: [trajectory] as `buffer.py` saves, or one bare trajectory."""

    def is_snapshot(x: Any) -> bool:
        return isinstance(x, list | tuple) and len(x) > 0 and all(isinstance(t, torch.Tensor) for t in x)

    if isinstance(obj, list | tuple) and obj and all(is_snapshot(s) for s in obj):
        return [list(obj)]
    if (
        isinstance(obj, list | tuple)
        and obj
        and all(isinstance(tr, list | tuple) and tr and all(is_snapshot(s) for s in tr) for tr in obj)
    ):
        return [list(tr) for tr in obj]
    raise MddError(
        f"'{path}' is not an expert buffer: expected a list of trajectories, each a list of per-epoch "
        "lists of parameter tensors (buffer.py's layout)."
    )


def check_layout(found: Sequence[torch.Tensor], expected: Sequence[Sequence[Any]], where: str,
                 model: str) -> None:  # fmt: skip
    """Every tensor's shape in order; the first difference is named with its index and both shapes."""
    for i in range(max(len(found), len(expected))):
        got = list(found[i].shape) if i < len(found) else None
        name, want = (expected[i][0], list(expected[i][1])) if i < len(expected) else ("-", None)
        if got != want:
            raise MddError(
                f"{where}: tensor {i} ({name}) expected shape {'none' if want is None else want}, found "
                f"{'none' if got is None else got} "
                f"({len(found)} tensors in the file, {len(expected)} in {model}, .parameters() order). "
                "Were these experts trained with the protocol's encoders?"
            )


def _flat(snapshot: Snapshot) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float() for t in snapshot]).contiguous()


def import_experts(
    directory: str | Path, source: str, workspace: Workspace, replace: bool = False
) -> ExpertImport:
    """Store the buffers in `directory` as the protocol's experts (0, 1, ... in file order of n)."""
    if source not in SOURCES:
        raise unknown("expert buffer format (--from)", source, SOURCES)
    directory = Path(directory)
    proto = workspace.protocol
    if proto.model.projection_dim:
        raise MddError(
            f"Protocol '{proto.name}' adds an image head (projection_dim = {proto.model.projection_dim}); "
            "the references' experts have none. Import under a protocol with projection_dim = 0."
        )
    files = buffer_files(directory)
    config = ExpertConfig.from_protocol(proto)
    folder = experts_folder(workspace, config)
    if (folder / MANIFEST).is_file():
        have = ExpertStore(folder).complete_experts
        if have and not replace:
            raise MddError(
                f"The expert store of protocol '{proto.name}' ({folder}) already holds experts {have}. "
                "Pass --replace to overwrite them with the imported ones."
            )
    text_dim = text_feature_dim(proto.text.source, random_weights=proto.text.weights == "random")
    model = workspace.fresh_model(seed=0, text_dim=text_dim)
    model_layout = {m: layout(model, m) for m in MODALITIES}
    buffers = {f"image_buffer.{k}": b.detach().cpu().clone() for k, b in model.image_encoder.named_buffers()}
    anchor = flatten(model, "image").cpu()
    label = f"protocol '{proto.name}' ({proto.image.source} + text head)"

    # First pass: every file is checked before anything is written.
    counts = set()
    for _, img_path, txt_path in files:
        img, txt = _load_pair(img_path, txt_path)
        for k, (img_traj, txt_traj) in enumerate(zip(img, txt, strict=True)):
            where = f"{img_path.name} trajectory {k}"
            if len(img_traj) != len(txt_traj):
                raise MddError(f"{where}: {len(img_traj)} image snapshots but {len(txt_traj)} text ones.")
            if len(img_traj) < len(config.kept):
                raise MddError(
                    f"{where}: {len(img_traj)} snapshots, but protocol '{proto.name}' keeps epochs "
                    f"{config.kept[0]}..{config.kept[-1]} ({len(config.kept)}). Lower [experts] keep_epochs."
                )
            counts.add(len(img_traj))
            for e in config.kept:
                check_layout(img_traj[e], model_layout["image"], f"{img_path.name} epoch {e}", label)
                check_layout(txt_traj[e], model_layout["text"], f"{txt_path.name} epoch {e}", label)
        del img, txt

    if replace and folder.is_dir():
        shutil.rmtree(folder)
    notes: list[str] = []
    if buffers:
        notes.append(
            f"{proto.image.source} has buffers (e.g. BatchNorm statistics) the files lack: every snapshot "
            "stores the pretrained ones"
        )
    imported: list[int] = []
    for _, img_path, txt_path in files:
        img, txt = _load_pair(img_path, txt_path)
        for k, (img_traj, txt_traj) in enumerate(zip(img, txt, strict=True)):
            expert = len(imported)
            folder.mkdir(parents=True, exist_ok=True)
            with artifact_lock(folder / f"expert{expert:03d}"):
                for e in config.kept:
                    tensors = {"image": _flat(img_traj[e]), "text": _flat(txt_traj[e]), **buffers}
                    write_snapshot(folder, expert, e, tensors)
            gap = float((_flat(img_traj[0]) - anchor).abs().max())
            if gap > 1e-6:
                notes.append(
                    f"expert {expert} ({img_path.name}) starts {gap:.3g} (max |diff|) away from "
                    f"{label}'s pretrained image encoder: it did not start from the protocol's anchor"
                )
            entry = {
                "complete": True,
                "imported_from": {"img": img_path.name, "txt": txt_path.name, "trajectory": k},
            }
            extra = {"imported": {"from": source, "directory": str(directory.resolve()),
                                  "snapshots_in_files": sorted(counts)}}  # fmt: skip
            record_expert(folder, workspace, config, expert, entry, model_layout, extra)
            imported.append(expert)
        del img, txt
    if any(c != config.epochs + 1 for c in counts):
        notes.append(
            f"the files hold {sorted(counts)} snapshots per expert; protocol '{proto.name}' trains "
            f"{config.epochs} epochs ({config.epochs + 1} snapshots); epochs {config.kept} were stored"
        )
    if len(imported) < config.num_experts:
        notes.append(
            f"{len(imported)} experts imported, protocol '{proto.name}' uses {config.num_experts}: methods "
            f"will train experts {len(imported)}..{config.num_experts - 1} themselves on first need"
        )
    return ExpertImport(folder, imported, config.kept, max(counts), notes)


def _load_pair(img_path: Path, txt_path: Path) -> tuple[list[Trajectory], list[Trajectory]]:
    img = trajectories(load_pt(img_path, "Expert file", mmap=True), img_path)
    txt = trajectories(load_pt(txt_path, "Expert file", mmap=True), txt_path)
    if len(img) != len(txt):
        raise MddError(f"'{img_path.name}' holds {len(img)} trajectories but '{txt_path.name}' {len(txt)}.")
    return img, txt
