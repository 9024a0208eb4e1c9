"""Interoperation with the reference code and the Hugging Face hub.

In: a reference's distilled set (`sets.py` with `lors.py`, `mttvl.py`, `mdm.py`) becomes a
`DistilledSet` that `mdd-bench eval` scores under the fair protocol; a reference's expert buffers
(`buffers.py`) become the protocol's expert store. Out: a `DistilledSet` as a `datasets` folder
(`hf.py`) or as LoRS's `.pt` (`lors.py`) for the reference's own evaluation script. `.pt` files are
only ever read with `torch.load(weights_only=True)` (`torchfile.py`).
"""

from __future__ import annotations

from pathlib import Path

from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError, unknown
from mdd_bench.interop.sets import SOURCES, import_set
from mdd_bench.protocol import Protocol

EXPORT_FORMATS = ("hf", "lors")


def export_set(
    distilled: DistilledSet, fmt: str, out: str | Path, protocol: Protocol
) -> tuple[Path, list[str]]:
    """Write `distilled` (a set of `protocol`) as `fmt`; returns where, and notes on what was filled in."""
    if fmt not in EXPORT_FORMATS:
        raise unknown("export format", fmt, EXPORT_FORMATS)
    made_for = distilled.provenance.get("protocol")
    if made_for is not None and made_for != protocol.name:
        raise MddError(
            f"This set was made for protocol '{made_for}', not '{protocol.name}': pass --protocol {made_for}."
        )
    res = protocol.data.resolution
    if tuple(distilled.images.shape[1:]) != (3, res, res):
        raise MddError(
            f"The set's images are {tuple(distilled.images.shape[1:])} but protocol '{protocol.name}' uses "
            f"3x{res}x{res}: pass the protocol the set was made under (--protocol)."
        )
    if fmt == "hf":
        from mdd_bench.interop.hf import export_hf

        return export_hf(distilled, out, protocol), []
    from mdd_bench.interop.lors import write_lors

    out = Path(out)
    if out.is_dir():
        out = out / "distilled.pt"
    return write_lors(distilled, out, protocol)


__all__ = ["EXPORT_FORMATS", "SOURCES", "export_set", "import_set"]
