"""MDM's distilled set. The released loop saves nothing; MDM's `eval.py` is LoRS's `evaluate_only.py`
and reads LoRS's layout, so an MDM set is a dict with `image` and `text` (CLIP-normalised pixels, BERT
[CLS] vectors), plus, for that script, a `similarity_mat` and `syn_lr_img`/`syn_lr_txt`.

MDM learns neither a similarity nor step sizes (spec `mdm.md` section 0): a `similarity_mat` must be
the identity (anything else is a LoRS set: use --from lors), and the file's step sizes are only the
evaluation lrs someone chose, so they are recorded in the provenance, not kept as learned extras.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mdd_bench.errors import MddError
from mdd_bench.interop.reference import ReferenceSet
from mdd_bench.interop.torchfile import as_tensor, load_pt, need_dict


def read_mdm(path: Path) -> ReferenceSet:
    raw = need_dict(load_pt(path, "MDM set"), path, ("image", "text"), "mdm")
    images, texts = as_tensor(raw["image"], "image", path), as_tensor(raw["text"], "text", path)
    ref = ReferenceSet(images, texts, eval_dsa=True, found_keys=sorted(map(str, raw)))
    if "similarity_mat" in raw:
        sim = as_tensor(raw["similarity_mat"], "similarity_mat", path).float()
        n = images.shape[0]
        if sim.shape != (n, n) or not torch.allclose(sim, torch.eye(n), atol=1e-6):
            raise MddError(
                f"'{path}': similarity_mat is not the {n}x{n} identity, but MDM learns no similarity. "
                "Import it with --from lors."
            )
        ref.notes.append("similarity_mat is the identity (MDM learns none): not kept")
    lrs = {k: float(as_tensor(raw[k], k, path).reshape(())) for k in ("syn_lr_img", "syn_lr_txt") if k in raw}
    if lrs:
        ref.provenance["file_eval_lrs"] = lrs
        ref.notes.append("syn_lr_* are evaluation lrs, not learned by MDM: recorded, not kept as extras")
    return ref
