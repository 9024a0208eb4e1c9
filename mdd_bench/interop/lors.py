"""LoRS's distilled-set file (`distilled_{it}.pt` of `distill_tesla_lors.py`), read and written.

The file is one dict: `image` [N, 3, 224, 224] (CLIP-normalised), `text` [N, 768] (BERT [CLS]),
`similarity_params` (low-rank: [a, L, R]; full: [S]), `similarity_mat` (the N x N matrix the
reference's `evaluate_only.py` trains with), `syn_lr_img`, `syn_lr_txt` (0-d tensors).

LoRS does not store the low-rank scale alpha (it is a command-line flag): S = diag(a) + alpha / r L R^T.
On import alpha is recovered from `similarity_mat` by least squares and the factors are kept only when
they rebuild the stored matrix; otherwise the matrix itself is kept (it is what LoRS evaluates with).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.interop.pixels import REFERENCE_NORMALISATION, Normalisation, renormalise
from mdd_bench.interop.reference import ReferenceSet, learned_lrs
from mdd_bench.interop.torchfile import as_tensor, load_pt, need_dict, save_pt
from mdd_bench.protocol import Protocol

REQUIRED = ("image", "text", "similarity_mat")
KEYS = ("image", "text", "similarity_params", "similarity_mat", "syn_lr_img", "syn_lr_txt")


def read_lors(path: Path) -> ReferenceSet:
    raw = need_dict(load_pt(path, "LoRS set"), path, REQUIRED, "lors")
    images, texts = as_tensor(raw["image"], "image", path), as_tensor(raw["text"], "text", path)
    n = images.shape[0]
    sim_mat = as_tensor(raw["similarity_mat"], "similarity_mat", path).float()
    if tuple(sim_mat.shape) != (n, n):
        raise MddError(f"'{path}': similarity_mat is {tuple(sim_mat.shape)}, expected ({n}, {n}).")
    ref = ReferenceSet(images, texts, eval_loss="wbce", eval_dsa=False, found_keys=sorted(map(str, raw)))
    ref.notes.append("native evaluation loss: WBCE, as LoRS's scripts evaluate (--loss_type WBCE)")
    ref.extras.update(_similarity(raw.get("similarity_params"), sim_mat, path, ref.notes))
    ref.extras.update(learned_lrs(raw, path, ref.notes))
    ref.provenance["similarity"] = "low-rank" if "sim_diag" in ref.extras else "full"
    return ref


def _similarity(params, sim_mat: torch.Tensor, path: Path, notes: list[str]) -> dict[str, torch.Tensor]:
    if params is None:
        notes.append("no similarity_params: kept similarity_mat as a full matrix")
        return {"similarity": sim_mat}
    if not isinstance(params, list | tuple) or len(params) not in (1, 3):
        raise MddError(
            f"'{path}': similarity_params should be [a, L, R] (low-rank) or [S] (full), "
            f"got {type(params).__name__} of {len(params) if isinstance(params, list | tuple) else '?'}."
        )
    tensors = [as_tensor(p, f"similarity_params[{i}]", path).float() for i, p in enumerate(params)]
    if len(tensors) == 1:
        if not torch.allclose(tensors[0], sim_mat, rtol=1e-4, atol=1e-6):
            notes.append("similarity_params[0] differs from similarity_mat: kept similarity_mat")
        return {"similarity": sim_mat}
    diag, left, right = tensors
    n = sim_mat.shape[0]
    if diag.shape != (n,) or left.ndim != 2 or left.shape[0] != n or right.shape != left.shape:
        raise MddError(
            f"'{path}': low-rank similarity_params have shapes {[tuple(t.shape) for t in tensors]}, "
            f"expected [({n},), ({n}, r), ({n}, r)]."
        )
    alpha = fit_alpha(diag, left, right, sim_mat)
    if alpha is None:
        notes.append(
            "the low-rank factors do not rebuild similarity_mat: kept similarity_mat as a full matrix"
        )
        return {"similarity": sim_mat}
    if not (left @ right.T).abs().max() > 0:
        notes.append("L R^T = 0 (an identity-start similarity): alpha is not in the file and "
                     "does not matter, stored as 1")  # fmt: skip
    else:
        notes.append(f"alpha (not stored by LoRS) recovered from similarity_mat: {alpha:.6g}")
    return {"sim_diag": diag, "sim_left": left, "sim_right": right, "sim_alpha": torch.tensor(alpha)}


def fit_alpha(
    diag: torch.Tensor, left: torch.Tensor, right: torch.Tensor, sim_mat: torch.Tensor
) -> float | None:
    """alpha with diag(a) + alpha / r L R^T = S (least squares), or None when no alpha rebuilds S."""
    product = left.double() @ right.double().T
    rest = sim_mat.double() - torch.diag(diag.double())
    norm = float((product * product).sum())
    alpha = 1.0 if norm == 0 else left.shape[1] * float((rest * product).sum()) / norm
    rebuilt = torch.diag(diag.double()) + alpha / left.shape[1] * product
    scale = max(1.0, float(sim_mat.abs().max()))
    return alpha if torch.allclose(rebuilt, sim_mat.double(), rtol=1e-4, atol=1e-5 * scale) else None


def write_lors(distilled: DistilledSet, path: str | Path, protocol: Protocol) -> tuple[Path, list[str]]:
    """Write `distilled` in LoRS's layout for the reference's `evaluate_only.py --ckpt_path`.

    Images move into LoRS's pixel space (CLIP statistics). A set without a learned similarity gets
    the identity, in LoRS's full form (`similarity_params = [I]`, the `FullSimilarityGenerator` start),
    so the reference trains it on one-to-one targets; a set without learned step sizes gets the
    protocol's evaluation lrs of its source encoder pair, since `evaluate_only.py` needs both keys.
    Returns the path and notes of what was filled in.
    """
    notes: list[str] = []
    n = distilled.size
    ex = distilled.extras
    if "sim_diag" in ex:
        params = [ex["sim_diag"], ex["sim_left"], ex["sim_right"]]
        sim_mat = distilled.similarity()
    elif "similarity" in ex:
        params, sim_mat = [ex["similarity"]], ex["similarity"]
    else:
        params, sim_mat = [torch.eye(n)], torch.eye(n)
        notes.append("no learned similarity: wrote the identity (LoRS's full form)")
    lrs = distilled.learned_lrs()
    if lrs is None:
        recipe = protocol.eval.pair_recipe(protocol.image.source, protocol.text.source)
        lrs = (recipe["lr_img"], recipe["lr_txt"])
        notes.append(f"no learned step sizes: wrote the protocol's evaluation lrs {lrs[0]:g}/{lrs[1]:g}")
    images = renormalise(distilled.images, Normalisation.of(protocol), REFERENCE_NORMALISATION["lors"])
    obj = {
        "image": images.contiguous().clone(),
        "text": distilled.texts.float().contiguous().clone(),
        "similarity_params": [p.float().contiguous().clone() for p in params],
        "similarity_mat": sim_mat.float().contiguous().clone(),
        "syn_lr_img": torch.tensor(float(lrs[0])),
        "syn_lr_txt": torch.tensor(float(lrs[1])),
    }
    return save_pt(path, obj), notes
