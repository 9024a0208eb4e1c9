"""Galleries: what a distilled set looks like and what its pairs "say".

For each result whose distilled set is still on disk: up to GALLERY_SIZE of its synthetic images,
de-normalised to RGB with the protocol's mean/std, each beside the real training caption nearest to its
synthetic text embedding (cosine, against the training split's caption embeddings under the protocol's
source text encoder, read from the embedding cache). Drawn as one PNG per set and inlined in the HTML
page. A result whose set is gone (only the JSON committed) gets no gallery and one log line.

This is the one part of the report that reads more than result files: the sets and the captions.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mdd_bench.errors import MddError
from mdd_bench.record import FULL_DATA, read_result
from mdd_bench.report.names import dataset_name, method_name, ordered_methods

if TYPE_CHECKING:
    from mdd_bench.protocol import Protocol

GALLERY_SIZE = 20
COLUMNS = 5


@dataclass(frozen=True)
class Gallery:
    """One distilled set's pairs as a reader sees them."""

    key: str  # file stem, from the result file's path under the runs folder
    title: str
    result_file: str  # relative to the runs folder
    set_size: int
    indices: list[int]  # which pairs of the set are shown
    images: np.ndarray  # uint8 [n, H, W, 3]
    captions: list[str]  # nearest real training caption of each shown pair's text embedding
    similarities: list[float]  # their cosine similarity


def displayable(images: np.ndarray, mean: Iterable[float], std: Iterable[float]) -> np.ndarray:
    """[N, 3, H, W] in the protocol's normalised pixel space -> uint8 [N, H, W, 3] RGB (clipped: a
    distilled pixel may leave the range real images span)."""
    mean_ = np.asarray(tuple(mean), dtype=np.float32).reshape(1, 3, 1, 1)
    std_ = np.asarray(tuple(std), dtype=np.float32).reshape(1, 3, 1, 1)
    rgb = np.clip(np.asarray(images, dtype=np.float32) * std_ + mean_, 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def nearest_captions(texts: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index into `bank` of the row with the highest cosine to each row of `texts`, and that cosine."""
    if texts.shape[1] != bank.shape[1]:
        raise MddError(
            f"its text embeddings have {texts.shape[1]} dimensions but the training captions' have "
            f"{bank.shape[1]} (another text encoder?)"
        )

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    cosine = unit(texts) @ unit(bank).T
    best = cosine.argmax(axis=1)
    return best, cosine[np.arange(len(texts)), best]


def shown_indices(size: int, limit: int = GALLERY_SIZE) -> list[int]:
    """At most `limit` pairs, spread evenly over the set (its order often follows an initialisation)."""
    if size <= limit:
        return list(range(size))
    return sorted({int(i) for i in np.linspace(0, size - 1, limit).round()})


def find_set(result: dict[str, Any], result_path: Path) -> Path | None:
    """The distilled set a result names: its recorded path (absolute, or relative to where `run` ran),
    else a file of that name in the `sets/` folder beside the result (a runs folder that moved)."""
    from mdd_bench.distilled import DistilledSet

    recorded = result.get("distilled_set")
    if not recorded:
        return None
    for candidate in (Path(recorded), result_path.parent / "sets" / Path(recorded).name):
        try:
            return DistilledSet.check_path(candidate)[0]
        except MddError:
            continue
    return None


def _protocol(result: dict[str, Any], file: str) -> Protocol:
    """The protocol the result ran under, as recorded in it (else the packaged one of that name)."""
    from mdd_bench.protocol import load_protocol, parse_protocol

    recorded = result.get("config", {}).get("protocol")
    proto = (
        parse_protocol(recorded, f"{file} (recorded protocol)")
        if recorded
        else load_protocol(result["protocol"])
    )
    return proto.with_dataset(result["dataset"])


class _CaptionBank:
    """Training captions and their cached embeddings per (protocol settings, dataset), loaded once."""

    def __init__(self) -> None:
        self._banks: dict[tuple[str, str], tuple[list[str], np.ndarray]] = {}

    def get(self, proto: Protocol) -> tuple[list[str], np.ndarray]:
        key = (proto.hash, proto.data.dataset)
        if key not in self._banks:
            from mdd_bench.data import load_dataset
            from mdd_bench.pretrained.text_features import split_embeddings

            dataset = load_dataset(proto.data.dataset, proto, decode=False, progress=False)
            embeddings = split_embeddings(dataset, proto.text, None, ("train",), progress=False)["train"]
            self._banks[key] = (list(dataset.train.captions), embeddings)
        return self._banks[key]


def _title(result: dict[str, Any]) -> str:
    title = (
        f"{method_name(result['method'])}, {result['budget']} pairs, seed {result['seed']} "
        f"({dataset_name(result['dataset'])})"
    )
    ablation = result.get("ablation") or {}
    return title + (f", ablation {ablation['group']}: {ablation['variant']}" if ablation else "")


def _key(file: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", file.removesuffix(".json").replace("/", "_"))


def gallery_of(
    result: dict[str, Any], file: str, set_path: Path, bank: _CaptionBank, limit: int = GALLERY_SIZE
) -> Gallery:
    from mdd_bench.distilled import DistilledSet

    proto = _protocol(result, file)
    distilled = DistilledSet.load(set_path)
    indices = shown_indices(distilled.size, limit)
    captions, embeddings = bank.get(proto)
    texts = distilled.texts[indices].float().numpy()
    best, cosine = nearest_captions(texts, embeddings)
    images = displayable(distilled.images[indices].float().numpy(), proto.data.mean, proto.data.std)
    return Gallery(
        key=_key(file),
        title=_title(result),
        result_file=file,
        set_size=distilled.size,
        indices=indices,
        images=images,
        captions=[captions[i] for i in best],
        similarities=[float(c) for c in cosine],
    )


def _order(result: dict[str, Any], methods: list[str]) -> tuple:
    """Main grid first (method, budget, seed), then each ablation group (variant, seed)."""
    ablation = result.get("ablation") or {}
    return (
        bool(ablation),
        str(ablation.get("group", "")),
        methods.index(result["method"]),
        int(result["budget"]),
        str(ablation.get("variant", "")),
        int(result["seed"]),
    )


def collect_galleries(
    runs: Path, files: Iterable[str], log: Callable[[str], None] = lambda _: None, limit: int = GALLERY_SIZE
) -> list[Gallery]:
    """A gallery per result file (paths relative to `runs`) whose distilled set exists, in `_order`. A
    set that is missing or unreadable is one log line, not an error."""
    runs = Path(runs)
    results = [(f, read_result(runs / f)) for f in dict.fromkeys(files)]
    results = [(f, r) for f, r in results if r.get("distilled_set") and r["method"] != FULL_DATA]
    methods = ordered_methods(r["method"] for _, r in results)
    results.sort(key=lambda fr: _order(fr[1], methods))
    bank = _CaptionBank()
    galleries = []
    seen: set[Path] = set()
    for file, result in results:
        set_path = find_set(result, runs / file)
        if set_path is None:
            log(f"no gallery for {file}: its distilled set {result['distilled_set']} is not on disk")
            continue
        if set_path.resolve() in seen:  # an ablation variant that reuses a main-grid set
            continue
        seen.add(set_path.resolve())
        try:
            galleries.append(gallery_of(result, file, set_path, bank, limit))
        except (MddError, OSError, ValueError) as exc:  # a picture is never worth failing the report
            log(f"no gallery for {file}: {exc}")
    return galleries


def write_gallery_png(gallery: Gallery, folder: Path) -> Path:
    """The grid as a PNG: each image with its nearest caption and the cosine under it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(gallery.indices)
    cols = min(COLUMNS, max(n, 1))
    rows = max(math.ceil(n / cols), 1)
    fig = Figure(figsize=(1.9 * cols, 2.15 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        ax.imshow(gallery.images[k], interpolation="nearest")
        caption = "\n".join(textwrap.wrap(gallery.captions[k], 26, max_lines=3, placeholder=" …"))
        ax.set_title(
            f"#{gallery.indices[k]}  cos {gallery.similarities[k]:.2f}\n{caption}", fontsize=6, loc="left"
        )
    shown = f"{n} of {gallery.set_size} pairs" if n < gallery.set_size else f"all {n} pairs"
    fig.suptitle(f"{gallery.title}: {shown}, each with the nearest real training caption", fontsize=8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{gallery.key}.png"
    fig.savefig(path, dpi=120)
    return path
