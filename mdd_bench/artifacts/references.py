"""Reference runs, cached per protocol and dataset: the full-data upper bound.

Its first repetition's trained model is kept: later issues use it as the feature model of the
herding and k-center baselines, and the forgetting statistics recorded while it trains (per-pair
correctness against a fixed gallery, every epoch) rank pairs for the forgetting baseline.

It trains what the protocol's evaluation trains (`[eval] towers`): under a frozen-backbone protocol the
upper bound is two heads trained on every pair, and the coreset baselines' feature model is that model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mdd_bench.cache import atomic_save_npy, atomic_write, atomic_write_json, cache_dir, stable_hash
from mdd_bench.data.pairs import PairDataset, Split
from mdd_bench.digests import note_artifact
from mdd_bench.evaluation.evaluator import ArchResult
from mdd_bench.evaluation.metrics import score
from mdd_bench.evaluation.training import Recipe, train_dual
from mdd_bench.locks import artifact_lock
from mdd_bench.models.dual import DualEncoder
from mdd_bench.protocol import Protocol
from mdd_bench.workspace import Workspace
from mdd_bench.workspace.pairs import embed_images, embed_texts

REFERENCE_VERSION = 2  # 2: per-encoder recipes, per-repetition resume
GALLERY_SIZE = 1023


class ForgettingRecorder:
    """Per-pair correctness after every epoch, scored against one fixed random gallery.

    Pair i is correct when its image ranks its own caption above every gallery caption and its
    caption ranks its own image above every gallery image (both directions, top-1). Gallery entries
    showing the same image as i are skipped: they are not negatives. In-batch correctness would
    depend on the random batch; a fixed gallery makes flips comparable across epochs.
    """

    def __init__(self, split: Split, text_emb: np.ndarray, protocol, seed: int) -> None:
        self.split, self.text_emb, self.protocol = split, text_emb, protocol
        n = split.num_captions
        rng = np.random.default_rng(seed)
        self.gallery = np.sort(rng.choice(n, size=min(GALLERY_SIZE, n - 1), replace=False))
        self.history: list[np.ndarray] = []

    @torch.no_grad()
    def __call__(self, epoch: int, model: DualEncoder) -> None:
        images = embed_images(model, self.split, self.protocol)
        texts = embed_texts(model, self.text_emb)
        owner = torch.from_numpy(self.split.caption_image).to(images.device)
        pair_img = images[owner]
        own = (pair_img * texts).sum(1)
        g_img, g_txt, g_owner = pair_img[self.gallery], texts[self.gallery], owner[self.gallery]
        correct = np.empty(len(owner), dtype=bool)
        for s in range(0, len(owner), 2048):
            same = owner[s : s + 2048, None] == g_owner[None, :]
            i2t = (pair_img[s : s + 2048] @ g_txt.T).masked_fill(same, float("-inf")).amax(1)
            t2i = (texts[s : s + 2048] @ g_img.T).masked_fill(same, float("-inf")).amax(1)
            ok = (own[s : s + 2048] > i2t) & (own[s : s + 2048] > t2i)
            correct[s : s + 2048] = ok.cpu().numpy()
        self.history.append(correct)

    def matrix(self) -> np.ndarray:
        """bool [epochs, pairs]."""
        return np.stack(self.history) if self.history else np.zeros((0, 0), dtype=bool)


def forgetting_counts(correct: np.ndarray) -> np.ndarray:
    """Toneva et al.: learned-then-forgotten transitions per pair; never learned counts as +inf."""
    flips = (correct[:-1] & ~correct[1:]).sum(0).astype(np.float64)
    flips[~correct.any(0)] = np.inf
    return flips


@dataclass
class FullDataReference:
    folder: Path
    result: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def forgetting_path(self) -> Path:
        return self.folder / "forgetting.npy"

    def correctness(self) -> np.ndarray:
        return np.load(self.forgetting_path)

    def load_model(self, workspace: Workspace) -> DualEncoder:
        state = load_file(str(self.model_path))
        return workspace.load_model(state, self.result["image_encoder"], workspace.protocol.eval.towers)


def reference_folder(p: Protocol, ds: PairDataset, image_encoder: str | None = None) -> Path:
    # Only what shapes this training run: changing, say, the expert settings must not retrain it.
    image_encoder = image_encoder or p.image.source
    settings = {k: v for k, v in p.to_dict().items() if k in ("data", "image", "text", "model", "eval")}
    # Repetitions are files of their own in the folder, so asking for more extends the same reference.
    settings["eval"] = {k: v for k, v in settings["eval"].items() if not k.endswith("repetitions")}
    key = stable_hash([settings, ds.fingerprint(), REFERENCE_VERSION, image_encoder])
    suffix = "" if image_encoder == p.image.source else f"-{image_encoder}"
    return cache_dir("references") / f"{p.name}-{ds.name}{suffix}-{key}"


def full_data_recipe(protocol: Protocol, image_encoder: str, lr_img: float | None = None) -> Recipe:
    """The encoder pair's recipe for full_data_epochs with its full-data image lr (chosen on val by
    `tune-eval`), decay at the middle, no DSA (the references augment real images instead:
    `eval.real_augment`)."""
    epochs = protocol.eval.full_data_epochs
    text = protocol.text.source
    return Recipe.from_eval(
        protocol,
        image_encoder,
        text,
        epochs=epochs,
        lr_decay_epoch=epochs // 2 + 1,
        dsa=False,
        lr_img=lr_img or protocol.eval.full_data_lr_img(image_encoder, text),
    )


def train_full_data(
    workspace: Workspace,
    image_encoder: str,
    seed: int,
    real_augment: bool,
    recorder: ForgettingRecorder | None = None,
    progress: bool = True,
    lr_img: float | None = None,
) -> DualEncoder:
    """One full-data training run (every training pair, `full_data_recipe`; `lr_img` overrides its lr)."""
    source = workspace.real_pairs("train", 30_000 + seed if real_augment else None)
    model = workspace.fresh_model(seed, image_encoder, towers=workspace.protocol.eval.towers)
    recipe = full_data_recipe(workspace.protocol, image_encoder, lr_img)
    desc = f"full data {image_encoder} rep {seed}"
    return train_dual(model, source, recipe, seed, None, recorder, progress, desc)


def full_data_reference(
    workspace: Workspace,
    progress: bool = True,
    image_encoder: str | None = None,
    repetitions: int | None = None,
) -> FullDataReference:
    """Train on every training pair with the evaluation recipe (full_data_epochs), R repetitions.

    Each finished repetition is saved on its own (`runs/rep<seed>.json`), so an interruption keeps
    them; repetition 0 of the source encoder also keeps its model and the forgetting statistics, written
    before its `rep0.json`, so a repetition file is only there once everything it stands for is.
    `result.json` holds every finished repetition (it says how many); asking for more extends it. A
    lock on the folder makes a second process wait for the first instead of training the same runs.
    """
    protocol, dataset = workspace.protocol, workspace.dataset
    image_encoder = image_encoder or protocol.image.source
    reps = repetitions or protocol.eval.full_data_repetitions
    folder = reference_folder(protocol, dataset, image_encoder)
    note_artifact(folder)
    cached = cached_reference(folder, reps)
    if cached is not None:
        return cached
    with artifact_lock(folder):
        return cached_reference(folder, reps) or _train_reference(workspace, image_encoder, reps, progress)


def cached_reference(folder: Path, repetitions: int) -> FullDataReference | None:
    """The reference in `folder` when it has at least `repetitions` finished repetitions."""
    result_path = folder / "result.json"
    if not result_path.exists():
        return None
    cached = json.loads(result_path.read_text())
    return FullDataReference(folder, cached) if len(cached["runs"]) >= repetitions else None


def _train_reference(
    workspace: Workspace, image_encoder: str, reps: int, progress: bool
) -> FullDataReference:
    protocol, dataset = workspace.protocol, workspace.dataset
    is_source = image_encoder == protocol.image.source
    folder = reference_folder(protocol, dataset, image_encoder)
    train_emb = workspace.text_embeddings("train")
    recipe = full_data_recipe(protocol, image_encoder)
    seeds = list(range(reps))
    runs = []
    for seed in seeds:
        run_path = folder / "runs" / f"rep{seed}.json"
        if run_path.exists():
            runs.append(json.loads(run_path.read_text()))
            continue
        recorder = (
            ForgettingRecorder(dataset.train, train_emb, protocol, seed) if is_source and seed == 0 else None
        )
        model = train_full_data(
            workspace, image_encoder, seed, protocol.eval.real_augment, recorder, progress
        )
        if recorder is not None:
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            # The thread count rides along: the features herding and k-center select on are these
            # floats, which another thread count trains slightly differently.
            meta = {"torch_threads": str(torch.get_num_threads())}
            atomic_write(
                folder / "model.safetensors", lambda p, s=state, m=meta: save_file(s, str(p), metadata=m)
            )
            atomic_save_npy(folder / "forgetting.npy", recorder.matrix())
        runs.append(score(workspace, model, "test"))
        atomic_write_json(run_path, runs[-1])
    # More repetitions than asked may be on disk (an earlier, longer request): report them all.
    while (folder / "runs" / f"rep{len(seeds)}.json").exists():
        runs.append(json.loads((folder / "runs" / f"rep{len(seeds)}.json").read_text()))
        seeds.append(len(seeds))
    arch = ArchResult(image_encoder, protocol.text.source, seeds, runs, is_source, asdict(recipe))
    result = {"pairs": dataset.train.num_captions, **arch.to_dict()}
    atomic_write_json(folder / "result.json", result)
    return FullDataReference(folder, result)
