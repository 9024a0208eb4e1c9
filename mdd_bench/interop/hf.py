"""A distilled set as a Hugging Face `datasets` folder (`save_to_disk`), ready for `push_to_hub`.

One row per synthetic pair:
- `image`: the de-normalised image as PNG (8-bit, clipped to [0, 1]: for viewing and sharing; the
  exact float pixels stay in the safetensors and LoRS exports; the clipped fraction is in the metadata);
- `text_embedding`: the pair's vector in the source text encoder's space (float32);
- one column per per-pair extra (`similarity`: the pair's row of S; `sim_diag`, `sim_left`, `sim_right`:
  its low-rank factors).
The scalar extras (`sim_alpha`, `lr_img`, `lr_txt`), the provenance, the protocol and its pixel
statistics are JSON in the dataset's description (`info.description`, key `mdd_bench`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError, cannot_write
from mdd_bench.interop.pixels import Normalisation, to_uint8
from mdd_bench.protocol import Protocol

FORMAT_VERSION = 1


def require_datasets() -> Any:
    """The `datasets` package, imported only when an export needs it."""
    try:
        import datasets
    except ImportError:
        raise MddError(
            "Export to Hugging Face needs the `datasets` package, missing here: pip install 'datasets>=2.18'."
        ) from None
    return datasets


def _png(pixels) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def metadata(distilled: DistilledSet, protocol: Protocol, clipped: float) -> dict[str, Any]:
    norm = Normalisation.of(protocol)
    scalars = {k: float(v) for k, v in distilled.extras.items() if v.ndim == 0}
    return {
        "mdd_bench": {
            "format_version": FORMAT_VERSION,
            "pairs": distilled.size,
            "image_shape": list(distilled.images.shape[1:]),
            "text_dim": int(distilled.texts.shape[1]),
            "protocol": protocol.name,
            "text_encoder": protocol.text.source,
            "image_encoder": protocol.image.source,
            "normalisation": norm.describe(),
            "png_clipped_fraction": clipped,
            "scalar_extras": scalars,
            "pair_extras": sorted(k for k, v in distilled.extras.items() if v.ndim > 0),
            "provenance": distilled.provenance,
        }
    }


def export_hf(distilled: DistilledSet, out: str | Path, protocol: Protocol) -> Path:
    """Write the set to folder `out` (`datasets.load_from_disk(out)` reads it back).

    The folder is built beside `out` and renamed into place, so `out` is never half written; an
    earlier export there is replaced, any other non-empty folder is left alone (an error).
    """
    datasets = require_datasets()
    out = Path(out)
    if out.is_file():
        raise MddError(f"'{out}' is a file; --format hf writes a folder: choose another --out.")
    if out.exists() and any(out.iterdir()) and not (out / "dataset_info.json").is_file():
        raise MddError(f"'{out}' exists and is not an earlier export; choose another --out.")
    pixels, clipped = to_uint8(distilled.images, Normalisation.of(protocol))
    dim = int(distilled.texts.shape[1])
    columns: dict[str, list] = {
        "image": [{"bytes": _png(p), "path": None} for p in pixels],
        "text_embedding": distilled.texts.float().numpy().tolist(),
    }
    features: dict[str, Any] = {
        "image": datasets.Image(),
        "text_embedding": datasets.Sequence(datasets.Value("float32"), length=dim),
    }
    for key, value in sorted(distilled.extras.items()):
        if value.ndim == 0:
            continue
        columns[key] = value.float().numpy().tolist()
        width = int(value.shape[1]) if value.ndim == 2 else None
        features[key] = (
            datasets.Value("float32")
            if value.ndim == 1
            else datasets.Sequence(datasets.Value("float32"), length=width)
        )
    feats = datasets.Features(features)
    info = datasets.DatasetInfo(
        description=json.dumps(metadata(distilled, protocol, clipped), sort_keys=True), features=feats
    )
    table = datasets.Dataset.from_dict(columns, features=feats, info=info)
    try:
        _write_folder(table, out)
    except OSError as exc:
        raise cannot_write(out, exc) from None
    return out


def _write_folder(table: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        table.save_to_disk(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The `mdd_bench` metadata of an export (for checks and for whoever downloads the set)."""
    datasets = require_datasets()
    loaded = datasets.load_from_disk(str(folder))
    return json.loads(loaded.info.description)["mdd_bench"]
