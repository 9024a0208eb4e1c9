"""MTT-VL's distilled set. The released `distill.py` saves no tensors (its `torch.save` lines are
commented out), so two layouts are read:

- a dict with `image`, `text` and optionally `syn_lr_img`, `syn_lr_txt` (the keys LoRS, which forked
  this code, saves; what a patched `distill.py` writes);
- the commented-out layout: `images_{it}.pt` (a bare image tensor) with `labels_{it}.pt` (the text
  tensor) beside it. It has no step sizes, so the native track then uses the protocol's lrs.

Images are CLIP-normalised, texts BERT [CLS] vectors. MTT-VL's evaluation trains both towers at
the learned image lr (it ignores the text lr); both are kept, as for our own `mtt-vl`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mdd_bench.errors import MddError
from mdd_bench.interop.reference import ReferenceSet, learned_lrs
from mdd_bench.interop.torchfile import as_tensor, load_pt, need_dict


def read_mttvl(path: Path) -> ReferenceSet:
    raw = load_pt(path, "MTT-VL set")
    if isinstance(raw, torch.Tensor):
        return _from_pair(path, raw)
    raw = need_dict(raw, path, ("image", "text"), "mtt-vl")
    images, texts = as_tensor(raw["image"], "image", path), as_tensor(raw["text"], "text", path)
    ref = ReferenceSet(images, texts, eval_dsa=False, found_keys=sorted(map(str, raw)))
    ref.extras.update(learned_lrs(raw, path, ref.notes))
    if "similarity_mat" in raw or "similarity_params" in raw:
        ref.notes.append("ignored a similarity in the file: MTT-VL learns none (use --from lors for it)")
    return ref


def _from_pair(path: Path, images: torch.Tensor) -> ReferenceSet:
    if not path.name.startswith("images_"):
        raise MddError(
            f"'{path}' holds a bare tensor: MTT-VL's layout names it images_<it>.pt with labels_<it>.pt "
            "beside it, or pass a dict file with 'image' and 'text'."
        )
    labels = path.with_name("labels_" + path.name[len("images_") :])
    texts = as_tensor(load_pt(labels, "MTT-VL text file"), "labels", labels)
    ref = ReferenceSet(images.detach().cpu(), texts, eval_dsa=False, found_keys=[path.name, labels.name])
    ref.notes.append(
        "images_/labels_ layout: no learned step sizes; the native track uses the protocol's lrs"
    )
    ref.provenance["text_file"] = str(labels.resolve())
    return ref
