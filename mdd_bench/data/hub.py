"""Image-caption datasets in Hugging Face `datasets` format: a `save_to_disk` folder or a hub name.

Images are read undecoded (the `{"bytes", "path"}` behind an `Image` column, or a column of file
paths) and go through the same `read_image` transform as image files, so a dataset gives the same
pixels whichever way it is stored. Decoded pixels are cached under the split's `_fingerprint`, so a
second load is a cache hit.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mdd_bench.data.images import ImageStore, LazyImages, cached_pixels, read_image
from mdd_bench.data.pairs import PairDataset, Split
from mdd_bench.errors import MddError, unknown

if TYPE_CHECKING:
    import datasets

# Our split name -> the names datasets use for it, in order of preference.
SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("validation", "val", "valid", "dev"),
    "test": ("test",),
}
CAPTION_COLUMNS = ("captions", "caption", "sentences", "text", "sentences_raw")


def load_hub(
    name_or_path: str,
    resolution: int,
    image_column: str | None = None,
    caption_column: str | None = None,
    decode: bool = True,
) -> PairDataset:
    """Load train/val/test of a `datasets` dataset; `decode=False` defers every image read."""
    dataset_dict, name, folder = _open(name_or_path)
    splits = {}
    for ours, theirs in _pick_splits(dataset_dict, name).items():
        ds = dataset_dict[theirs]
        image_col = _image_column(ds, image_column, name, theirs)
        caption_col = _caption_column(ds, caption_column, name, theirs)
        splits[ours] = _build_split(ds, ours, name, image_col, caption_col, folder, resolution, decode)
    return PairDataset(name=name, splits=splits, resolution=resolution, root=folder, layout="hf")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(name_or_path: str) -> tuple[Any, str, Path | None]:
    """(DatasetDict, display name, local folder or None for a hub dataset)."""
    import datasets

    path = Path(name_or_path).expanduser()
    if path.exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise MddError(
                f"'{path}' is not a dataset saved with `save_to_disk` ({_one_line(exc)})."
            ) from None
        name, folder = path.resolve().name, path.resolve()
    elif name_or_path.startswith(("/", ".", "~")):
        raise MddError(f"Dataset folder '{path}' does not exist. Pass a `save_to_disk` folder.")
    else:
        try:
            loaded = datasets.load_dataset(name_or_path)
        except Exception as exc:  # datasets raises many types: connection, not found, offline, ...
            raise MddError(
                f"Cannot load the Hugging Face dataset '{name_or_path}' ({type(exc).__name__}: "
                f"{_one_line(exc)}). Offline, run `save_to_disk` where there is internet and pass "
                "the folder."
            ) from None
        name, folder = name_or_path, None
    if not isinstance(loaded, datasets.DatasetDict):
        raise MddError(
            f"'{name_or_path}' holds a single split; mdd-bench needs a DatasetDict with train, "
            "validation and test splits."
        )
    return loaded, name, folder


def _pick_splits(dataset_dict: Any, name: str) -> dict[str, str]:
    found = list(dataset_dict.keys())
    picked = {}
    for ours, candidates in SPLIT_NAMES.items():
        match = next((c for c in candidates if c in found), None)
        if match is None:
            raise MddError(
                f"Dataset '{name}' has no '{ours}' split (looked for {', '.join(candidates)}); "
                f"found: {', '.join(found) or 'none'}."
            )
        picked[ours] = match
    return picked


def _image_column(ds: datasets.Dataset, given: str | None, name: str, split: str) -> str:
    import datasets

    columns = ds.column_names
    if given is not None:
        if given not in columns:
            raise unknown(f"image column of '{name}' [{split}]", given, columns)
        return given
    typed = [c for c in columns if isinstance(ds.features[c], datasets.Image)]
    if typed or "image" in columns:
        return typed[0] if typed else "image"
    raise MddError(
        f"Dataset '{name}' [{split}] has no image column (columns: {', '.join(columns)}). "
        "Pass --image-column NAME."
    )


def _caption_column(ds: datasets.Dataset, given: str | None, name: str, split: str) -> str:
    columns = ds.column_names
    if given is not None:
        if given not in columns:
            raise unknown(f"caption column of '{name}' [{split}]", given, columns)
        return given
    found = next((c for c in CAPTION_COLUMNS if c in columns), None)
    if found is None:
        raise MddError(
            f"Dataset '{name}' [{split}] has no caption column (looked for "
            f"{', '.join(CAPTION_COLUMNS)}; columns: {', '.join(columns)}). "
            "Pass --caption-column NAME."
        )
    return found


def _row_captions(value: Any, where: str) -> list[str]:
    """A row's captions: one string, a list of strings, or Karpathy-style `{"raw": ...}` objects."""
    if isinstance(value, dict) and "raw" in value:
        value = value["raw"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        out = [v["raw"] if isinstance(v, dict) and "raw" in v else v for v in value]
        if all(isinstance(c, str) for c in out):
            return out
    raise MddError(f"{where}: captions must be a string or a non-empty list of strings.")


def _build_split(
    ds: datasets.Dataset,
    split: str,
    name: str,
    image_col: str,
    caption_col: str,
    folder: Path | None,
    resolution: int,
    decode: bool,
) -> Split:
    rows = list(ds[caption_col])
    per_image = [_row_captions(v, f"Dataset '{name}' [{split}] row {i}") for i, v in enumerate(rows)]
    captions = [c for caps in per_image for c in caps]
    caption_image = np.repeat(np.arange(len(per_image)), [len(caps) for caps in per_image])
    raw, names = _raw_images(ds, image_col, split)
    read = _reader(raw, name, split, folder, resolution)
    if decode:
        key = ["hf", name, split, ds._fingerprint, image_col]
        images: ImageStore = cached_pixels(key, len(ds), read, resolution, f"{name} {split}")
    else:
        images = LazyImages(len(ds), read, resolution)
    return Split(split, images, captions, caption_image, image_names=names)


def _raw_images(ds: datasets.Dataset, col: str, split: str) -> tuple[Any, list[str]]:
    """Row-indexable undecoded images, and a name per image (its path, else `split/row`)."""
    import datasets

    if isinstance(ds.features[col], datasets.Image):
        raw = ds.select_columns([col]).cast_column(col, datasets.Image(decode=False))
        paths = list(raw.flatten()[f"{col}.path"])
    else:
        raw = ds.select_columns([col])
        paths = [v if isinstance(v, str) else None for v in raw[col]]
    names = [p or f"{split}/{i}" for i, p in enumerate(paths)]
    return raw, names


def _reader(
    raw: Any, name: str, split: str, folder: Path | None, resolution: int
) -> Callable[[int], np.ndarray]:
    col = raw.column_names[0]

    def read(i: int) -> np.ndarray:
        value = raw[i][col]
        if isinstance(value, dict) and value.get("bytes"):
            try:
                # read_image only calls PIL's Image.open, which takes a file object as well.
                return read_image(io.BytesIO(value["bytes"]), resolution)  # type: ignore[arg-type]
            except MddError:
                raise MddError(
                    f"Image in row {i} of dataset '{name}' [{split}] cannot be decoded. "
                    "Re-create the dataset or drop that row."
                ) from None
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, str) or not path:
            raise MddError(
                f"Row {i} of dataset '{name}' [{split}] has no image (got {type(value).__name__})."
            )
        return read_image(_resolve(path, folder), resolution)

    return read


def _resolve(path: str, folder: Path | None) -> Path:
    """A relative path in a saved dataset is taken from its folder when the file is there."""
    p = Path(path)
    if not p.is_absolute() and folder is not None and (folder / p).exists():
        return folder / p
    return p
