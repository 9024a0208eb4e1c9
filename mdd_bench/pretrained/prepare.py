"""`mdd-bench data prepare`: everything a dataset needs before any method runs, done once and cached."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mdd_bench.data import dataset_root, load_dataset
from mdd_bench.data.pairs import PairDataset
from mdd_bench.protocol import Protocol


@dataclass
class PrepareReport:
    dataset: PairDataset
    seconds: dict[str, float] = field(default_factory=dict)
    generated: bool = False

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def prepare(
    name: str, protocol: Protocol, data_root: str | Path | None = None, progress: bool = True
) -> PrepareReport:
    """Generate (shapes), decode images into the pixel cache, and embed every caption.

    Train/val/test captions are embedded with the source text encoder. The unseen text encoders
    (cross-architecture evaluation only) embed the test captions on first need, so preparing stays
    quick even when an unseen encoder must first be built (`minilm-l3-distilled`).
    """
    from mdd_bench.pretrained.text_features import split_embeddings

    seconds: dict[str, float] = {}
    generated = False
    if name == "shapes":
        from mdd_bench.data.shapes import ShapesConfig, ensure_shapes

        start = time.perf_counter()
        config = ShapesConfig.from_sizes(protocol.data.shapes, protocol.data.resolution)
        _, generated = ensure_shapes(dataset_root(name, data_root), config, progress)
        seconds["generate"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset = load_dataset(name, protocol, data_root, progress=progress)
    seconds["images"] = time.perf_counter() - start
    start = time.perf_counter()
    split_embeddings(dataset, protocol.text)
    seconds[f"text:{protocol.text.source}"] = time.perf_counter() - start
    return PrepareReport(dataset, seconds, generated)
