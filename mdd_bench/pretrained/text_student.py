"""`minilm-l3-distilled`: the cpu protocol's DistilBERT analogue, built offline once and cached.

The text twin of `anchors.py`: it trains on generated captions (data) a model that models/ then loads
from a weights folder, so models/ never imports data.

DistilBERT was made from BERT in two steps: keep every other layer, then train the student so its
hidden states follow the teacher's (a cosine loss among others). The second step is what puts the
student's [CLS] in (nearly) the teacher's space, which is why the paper's DistilBERT cells transfer a
head trained on BERT embeddings. A cut without it does not: measured under `cpu`, heads trained on
MiniLM embeddings score at chance on captions embedded by the bare cut (`minilm-l3`).

Here: MiniLM-L6 layers 0, 2, 4, trained with a masked cosine loss to MiniLM-L6's last hidden states
on captions drawn from the shapes caption generator with its own seed stream (the language of the
domain, none of the benchmark's captions), AdamW. The folder is keyed by the recipe and versions.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mdd_bench.cache import cache_dir, stable_hash
from mdd_bench.digests import note_artifact
from mdd_bench.locks import artifact_lock

DISTIL_VERSION = 1


@dataclass(frozen=True)
class DistilRecipe:
    captions: int = 8000
    epochs: int = 2
    lr: float = 1e-4
    batch_size: int = 64
    max_length: int = 32
    seed: int = 99
    keep_layers: tuple[int, ...] = (0, 2, 4)


def distilled_folder(recipe: DistilRecipe = DistilRecipe()) -> Path:
    import transformers

    from mdd_bench.data.shapes import GENERATOR_VERSION

    key = stable_hash([asdict(recipe), DISTIL_VERSION, GENERATOR_VERSION, transformers.__version__])
    return cache_dir("text_encoders") / f"minilm-l3-distilled-{key}"


def distillation_captions(recipe: DistilRecipe) -> list[str]:
    from mdd_bench.data.captions import pre_caption
    from mdd_bench.data.shapes import sample_scene, write_captions

    rng = np.random.default_rng([recipe.seed, 3])
    captions: list[str] = []
    while len(captions) < recipe.captions:
        captions += write_captions(sample_scene(rng), rng)
    return [pre_caption(c) for c in captions[: recipe.captions]]


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - cos between student and teacher hidden states, averaged over real (unpadded) tokens."""
    weights = mask.unsqueeze(-1).float()
    cos = F.cosine_similarity(student, teacher, dim=-1).unsqueeze(-1)
    return ((1 - cos) * weights).sum() / weights.sum()


def ensure_distilled(recipe: DistilRecipe = DistilRecipe(), progress: bool = True) -> Path:
    """The distilled student's folder (transformers format), training it on first need."""
    folder = distilled_folder(recipe)
    if not (folder / "config.json").exists():
        with artifact_lock(folder):  # a second process waits for the first one's folder
            if not (folder / "config.json").exists():
                _train_student(recipe, folder, progress)
    note_artifact(folder)
    return folder


def _train_student(recipe: DistilRecipe, folder: Path, progress: bool) -> None:
    from transformers import AutoModel, AutoTokenizer

    from mdd_bench.cache import atomic_write
    from mdd_bench.models.text import _keep_layers, _minilm_folder

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(_minilm_folder()))
    teacher = AutoModel.from_pretrained(str(_minilm_folder())).eval()
    student = AutoModel.from_pretrained(str(_minilm_folder()))
    _keep_layers(student, recipe.keep_layers)
    student.train()
    captions = distillation_captions(recipe)
    optimiser = torch.optim.AdamW(student.parameters(), lr=recipe.lr)
    rng = np.random.default_rng(recipe.seed)
    steps = recipe.epochs * -(-len(captions) // recipe.batch_size)
    bar = tqdm(total=steps, desc="distil minilm-l3", unit="step", disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        order = rng.permutation(len(captions))
        for start in range(0, len(order), recipe.batch_size):
            batch = [captions[i] for i in order[start : start + recipe.batch_size]]
            enc = tokenizer(
                batch, padding=True, truncation=True, max_length=recipe.max_length, return_tensors="pt"
            )
            with torch.no_grad():
                target = teacher(**enc).last_hidden_state
            loss = cosine_loss(student(**enc).last_hidden_state, target, enc["attention_mask"])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    student.eval()
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted earlier run
    student.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    atomic_write(tmp / "distil_recipe.json", lambda p: p.write_text(str(asdict(recipe))))
    tmp.rename(folder)  # the folder appears whole or not at all


# Text encoders whose weights this module trains (name -> recipe).
STUDENTS = {"minilm-l3-distilled": DistilRecipe()}


def text_encoder_weights(name: str, build: bool = True, progress: bool = True) -> Path | None:
    """The weights folder of a text encoder trained here (None for the others); with `build`, train it
    on first need, else just say where it would be."""
    recipe = STUDENTS.get(name)
    if recipe is None:
        return None
    return ensure_distilled(recipe, progress) if build else distilled_folder(recipe)
