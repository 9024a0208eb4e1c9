"""The DistilBERT analogue: the every-other-layer MiniLM student, distilled to the teacher's states."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mdd_bench.models import create_text_encoder
from mdd_bench.pretrained.text_student import (
    DistilRecipe,
    cosine_loss,
    distillation_captions,
    distilled_folder,
    ensure_distilled,
)

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

TINY = DistilRecipe(captions=192, epochs=2, lr=3e-4, batch_size=32, seed=5)


def test_cosine_loss_ignores_padding():
    a = torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    b = a.clone()
    b[0, 2:] = -b[0, 2:]  # differences only at padded positions
    assert cosine_loss(a, b, mask).item() < 1e-6
    assert cosine_loss(a, -a, mask).item() > 1.9


def test_captions_are_drawn_from_their_own_stream():
    caps = distillation_captions(TINY)
    assert len(caps) == 192 and caps == distillation_captions(TINY)
    assert caps != distillation_captions(dataclasses.replace(TINY, seed=6))


def test_distilled_student_is_closer_to_the_teacher_than_the_bare_cut():
    folder = ensure_distilled(TINY, progress=False)
    assert folder == distilled_folder(TINY) and (folder / "config.json").exists()
    assert distilled_folder(dataclasses.replace(TINY, epochs=3)) != folder
    teacher = create_text_encoder("minilm", 32)
    cut = create_text_encoder("minilm-l3", 32)
    student = create_text_encoder("minilm-l3-distilled", 32, weights=folder)
    assert student.model.config.num_hidden_layers == 3
    held_out = distillation_captions(dataclasses.replace(TINY, captions=64, seed=77))
    target = torch.from_numpy(teacher.embed(held_out, progress=False))

    def agreement(encoder) -> float:
        emb = torch.from_numpy(encoder.embed(held_out, progress=False))
        return float(F.cosine_similarity(emb, target, dim=1).mean())

    assert agreement(student) > agreement(cut) + 0.05
    assert np.isfinite(agreement(student))


def test_models_never_import_data_or_the_student():
    import ast
    from pathlib import Path

    import mdd_bench.models as models

    for path in Path(models.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = ("." * node.level) + (node.module or "")
                assert not target.startswith(("mdd_bench.data", "mdd_bench.pretrained")), (
                    path.name,
                    target,
                )


def test_a_student_name_without_weights_is_a_clear_error():
    import pytest

    from mdd_bench.errors import MddError

    with pytest.raises(MddError, match="weights folder"):
        create_text_encoder("minilm-l3-distilled", 32)
