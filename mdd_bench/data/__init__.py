"""Datasets: one front door, `load_dataset`, for the generated corpus, Karpathy folders and HF datasets."""

from __future__ import annotations

from pathlib import Path

from mdd_bench.cache import default_data_root
from mdd_bench.data.pairs import PairDataset, Split
from mdd_bench.errors import unknown
from mdd_bench.protocol import Protocol

DATASETS: dict[str, str] = {
    "shapes": "generated image-caption scenes (embedded default, no download)",
    "flickr8k": "Flickr8k, Karpathy splits (6k/1k/1k images, 5 captions each)",
    "flickr30k": "Flickr30k, Karpathy splits (29k/1k/1k images, 5 captions each)",
    "coco": "MS-COCO, Karpathy splits (113k/5k/5k images, 5 captions each)",
}
HUB_PREFIX = "hf:"


def list_datasets() -> dict[str, str]:
    return dict(
        DATASETS,
        **{f"{HUB_PREFIX}<name-or-folder>": "a Hugging Face dataset or save_to_disk folder"},
    )


def dataset_root(name: str, data_root: str | Path | None) -> Path:
    """Where a dataset lives: `--data-root` when given, else `$MDD_BENCH_DATA/<name>`."""
    if data_root is not None:
        return Path(data_root).expanduser()
    return default_data_root() if name == "shapes" else default_data_root() / name


def load_dataset(
    name: str,
    protocol: Protocol,
    data_root: str | Path | None = None,
    decode: bool = True,
    progress: bool = True,
) -> PairDataset:
    """The dataset `name` at the protocol's resolution; `shapes` is generated on first use."""
    resolution = protocol.data.resolution
    if name.startswith(HUB_PREFIX):
        from mdd_bench.data.hub import load_hub

        return load_hub(name[len(HUB_PREFIX) :], resolution, decode=decode)
    if name not in DATASETS:
        raise unknown("dataset", name, list(DATASETS))
    from mdd_bench.data.karpathy import load_karpathy

    root = dataset_root(name, data_root)
    if name == "shapes":
        from mdd_bench.data.shapes import ShapesConfig, ensure_shapes

        root, _ = ensure_shapes(root, ShapesConfig.from_sizes(protocol.data.shapes, resolution), progress)
    return load_karpathy(name, root, resolution, decode=decode)


def train_pairs(name: str, protocol: Protocol, data_root: str | Path | None = None) -> int | None:
    """The training pairs (captions) of a dataset, counted without decoding or generating any image, so
    a grid can refuse a budget it cannot fill before it starts.

    `shapes`: from the protocol's sizes (the generator writes `CAPTIONS_PER_IMAGE` per image); a folder:
    through its own loader, so a missing folder, annotation file or image folder raises the loader's
    one-line error here; None for a hub dataset by name (counting it would download it).
    """
    if name == "shapes":
        from mdd_bench.data.shapes import CAPTIONS_PER_IMAGE

        return protocol.data.shapes.train * CAPTIONS_PER_IMAGE
    hub = name[len(HUB_PREFIX) :] if name.startswith(HUB_PREFIX) else None
    if hub is not None and not Path(hub).expanduser().exists() and not hub.startswith(("/", ".", "~")):
        return None
    return load_dataset(name, protocol, data_root, decode=False, progress=False).train.num_captions


__all__ = [
    "DATASETS",
    "PairDataset",
    "Split",
    "dataset_root",
    "list_datasets",
    "load_dataset",
    "train_pairs",
]
