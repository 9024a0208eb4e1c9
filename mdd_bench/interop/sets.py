"""A reference's distilled set -> a `DistilledSet` of a protocol, checked on the way in.

Each reader (`lors.py`, `mttvl.py`, `mdm.py`) turns its file into a `ReferenceSet`: the tensors in the
reference's own pixel space, the extras mapped to `DistilledSet.EXTRA_KEYS`, and notes on how. Here the
set is checked against the protocol (resolution, text dimension, finite values) and moved into the
protocol's normalised pixel space.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError, unknown
from mdd_bench.interop.pixels import REFERENCE_NORMALISATION, Normalisation, renormalise
from mdd_bench.interop.reference import ReferenceSet
from mdd_bench.protocol import Protocol

# Each source's reader, by name ("module:function"): imported on first use, so the readers and this
# module never import each other, and a new source is one line here.
READERS = {
    "lors": "mdd_bench.interop.lors:read_lors",
    "mtt-vl": "mdd_bench.interop.mttvl:read_mttvl",
    "mdm": "mdd_bench.interop.mdm:read_mdm",
}
SOURCES = tuple(READERS)


def reader(source: str) -> Callable[[Path], ReferenceSet]:
    module, _, function = READERS[source].partition(":")
    return getattr(importlib.import_module(module), function)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_set(
    path: str | Path, source: str, protocol: Protocol, text_dim: int | None = None
) -> DistilledSet:
    """Read a reference's distilled set and return it as a `DistilledSet` of `protocol`.

    `text_dim`: the width of the protocol's source text encoder; by default read from its config
    (`models.text_feature_dim`), after the cheaper checks, so a wrong resolution fails first.
    """
    if source not in READERS:
        raise unknown("reference format (--from)", source, READERS)
    path = Path(path)
    ref = reader(source)(path)
    return to_protocol(ref, source, protocol, text_dim, path)


def to_protocol(
    ref: ReferenceSet, source: str, protocol: Protocol, text_dim: int | None, path: Path
) -> DistilledSet:
    images, texts = ref.images, ref.texts
    where = f"'{path}' ({source})"
    if images.ndim != 4 or images.shape[1] != 3:
        raise MddError(f"{where}: images are {tuple(images.shape)}, expected [N, 3, H, W].")
    if texts.ndim != 2:
        raise MddError(f"{where}: texts are {tuple(texts.shape)}, expected [N, D].")
    if images.shape[0] != texts.shape[0]:
        raise MddError(f"{where}: {images.shape[0]} images but {texts.shape[0]} texts; pairs must match.")
    res = protocol.data.resolution
    if tuple(images.shape[2:]) != (res, res):
        raise MddError(
            f"{where}: images are {images.shape[2]}x{images.shape[3]} but protocol '{protocol.name}' uses "
            f"{res}x{res}. Import under the protocol the set was distilled for{_at(images.shape[2])}."
        )
    if text_dim is None:
        from mdd_bench.models.text import text_feature_dim

        text_dim = text_feature_dim(protocol.text.source, random_weights=protocol.text.weights == "random")
    if texts.shape[1] != text_dim:
        raise MddError(
            f"{where}: texts are {texts.shape[1]}-d but protocol '{protocol.name}''s text encoder "
            f"'{protocol.text.source}' gives {text_dim}-d. Import under the protocol whose text encoder "
            "made them (the references embed with bert-base-uncased, 768-d: protocol 'paper')."
        )
    for name, tensor in {"images": images, "texts": texts, **ref.extras}.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise MddError(f"{where}: '{name}' holds NaN or infinite values; the distillation diverged.")
    reference_norm = REFERENCE_NORMALISATION[source]
    protocol_norm = Normalisation.of(protocol)
    same = " (the same statistics: unchanged)" if reference_norm.same_as(protocol_norm) else ""
    notes = [f"pixels: {reference_norm.name} -> {protocol_norm.name}{same}", *ref.notes]
    provenance = {
        **ref.provenance,
        "method": f"{source}-reference",
        "budget": int(images.shape[0]),
        "protocol": protocol.name,
        "protocol_hash": protocol.hash,
        "eval_loss": ref.eval_loss,
        "eval_dsa": ref.eval_dsa,
        "imported": {
            "from": source,
            "file": str(path.resolve()),
            "sha256": file_sha256(path),
            "keys": ref.found_keys,
            "notes": notes,
            "pixels": {"from": reference_norm.describe(), "to": protocol_norm.describe()},
        },
    }
    extras = {k: v.float() for k, v in ref.extras.items()}
    try:
        return DistilledSet(
            renormalise(images, reference_norm, protocol_norm), texts.float(), extras, provenance
        )
    except ValueError as exc:
        raise MddError(f"{where}: {exc}.") from None


def _at(resolution: int) -> str:
    """' (--protocol X)' naming the packaged protocols at `resolution`, if any."""
    from mdd_bench.protocol import list_protocols, load_protocol

    names = [n for n in list_protocols() if load_protocol(n).data.resolution == resolution]
    return f" (--protocol {' or '.join(names)})" if names else ""
