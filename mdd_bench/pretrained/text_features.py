"""Frozen caption embeddings, computed once per (captions, encoder, settings) and cached as .npy.

Cache key: sha256 of the raw captions list, the encoder name, the encoder's fingerprint (sha256 of
its weights, see `TextEncoder.fingerprint`), max_length, pooling and PREPROCESS_VERSION; for an encoder
with random weights (`[text] weights = "random"`) also that flag, in the key and the file name, so random
and real embeddings never share an entry.

Hashing weights needs the model in memory, yet a hit must not load it. So the fingerprint is
remembered on disk under a *stamp* of the model's files (path, size and mtime of the weights,
config and vocabulary): a lookup by name stats a few files and reads one small text file
(milliseconds). Rewriting a weight file changes its stamp, the fingerprint is then unknown, the
model is loaded and re-hashed, and the key changes only if the weights really did. On a miss the
key is always recomputed from the loaded model's own fingerprint, so a stale stamp cannot mislabel
an entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mdd_bench.cache import atomic_save_npy, cache_dir, stable_hash
from mdd_bench.data.captions import pre_caption
from mdd_bench.digests import note_artifact
from mdd_bench.errors import MddError
from mdd_bench.locks import artifact_lock

if TYPE_CHECKING:
    from mdd_bench.data.pairs import PairDataset
    from mdd_bench.models.text import TextEncoder
    from mdd_bench.protocol import TextSpec

# Bump when pre_caption or the pooling code changes what an embedding means.
PREPROCESS_VERSION = 1
POOLINGS = ("cls",)


class _LazyEncoder:
    """Loads the encoder only when a split actually misses the cache, and at most once."""

    def __init__(
        self,
        name: str,
        max_length: int,
        encoder: TextEncoder | None = None,
        progress: bool = True,
        random_weights: bool = False,
    ):
        self.name, self.max_length, self.encoder, self.progress = name, max_length, encoder, progress
        self.random_weights = encoder.random_weights if encoder is not None else random_weights

    def get(self) -> TextEncoder:
        if self.encoder is None:
            from mdd_bench.models.text import create_text_encoder

            self.encoder = create_text_encoder(
                self.name,
                max_length=self.max_length,
                weights=self._weights(),
                random_weights=self.random_weights,
            )
        return self.encoder

    def _weights(self, build: bool = True) -> Path | None:
        """The weights folder of an encoder trained here (none for a random build: nothing to train)."""
        from mdd_bench.pretrained.text_student import text_encoder_weights

        return None if self.random_weights else text_encoder_weights(self.name, build, self.progress)

    def fingerprint(self) -> str:
        if self.encoder is None:
            from mdd_bench.models.text import known_fingerprint

            known = known_fingerprint(self.name, self._weights(build=False), self.random_weights)
            if known is not None:
                return known
        return self.get().fingerprint


def captions_sha256(captions: list[str]) -> str:
    return hashlib.sha256(json.dumps(list(captions), ensure_ascii=False).encode()).hexdigest()


def _cache_path(captions: list[str], lazy: _LazyEncoder, fingerprint: str, pooling: str) -> Path:
    settings = {
        "captions": captions_sha256(captions),
        "encoder": lazy.name,
        "fingerprint": fingerprint,
        "max_length": lazy.max_length,
        "pooling": pooling,
        "preprocess": PREPROCESS_VERSION,
    }
    if lazy.random_weights:  # only then: the published encoders' entries keep their keys
        settings["random_weights"] = True
    key = stable_hash(settings, length=24)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(lazy.name).name)[:40]
    random = "-random" if lazy.random_weights else ""
    return cache_dir("text") / f"{label}{random}-{key}.npy"


def _read(path: Path, rows: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode=None)
    except (OSError, ValueError, EOFError):
        return None
    return array if array.ndim == 2 and array.shape[0] == rows else None


def _embed_cached(captions: list[str], lazy: _LazyEncoder, pooling: str, batch_size: int) -> np.ndarray:
    if pooling not in POOLINGS:
        raise MddError(f"Text pooling '{pooling}' is not supported. Supported: {', '.join(POOLINGS)}.")
    captions = list(captions)
    path = _cache_path(captions, lazy, lazy.fingerprint(), pooling)
    hit = _read(path, len(captions))
    if hit is None:
        with artifact_lock(path):  # a second process embedding the same captions waits, then reads
            hit = _read(path, len(captions))
            hit = hit if hit is not None else _embed(captions, lazy, pooling, batch_size)
    note_artifact(path)
    return hit


def _embed(captions: list[str], lazy: _LazyEncoder, pooling: str, batch_size: int) -> np.ndarray:
    encoder = lazy.get()
    # Templated corpora repeat captions a lot: embed each distinct text once, then scatter back.
    unique, inverse = np.unique([pre_caption(c) for c in captions], return_inverse=True)
    vectors = encoder.embed(
        unique.tolist(),
        batch_size=batch_size,
        progress=lazy.progress and len(unique) > batch_size,
        max_length=lazy.max_length,
    )
    out = vectors[inverse.reshape(-1)] if len(captions) else vectors[:0]
    atomic_save_npy(_cache_path(captions, lazy, encoder.fingerprint, pooling), out)
    return out


def caption_embeddings(
    captions: list[str],
    encoder_name: str,
    max_length: int,
    pooling: str = "cls",
    batch_size: int = 256,
    encoder: TextEncoder | None = None,
    random_weights: bool = False,
) -> np.ndarray:
    """float32 `[len(captions), dim]`: the encoder's [CLS] vector of each `pre_caption(c)`.

    Pass `encoder` to reuse a loaded model (its own weights, random or not, then apply); otherwise it is
    loaded only on a cache miss, with seeded random weights if `random_weights`.
    """
    lazy = _LazyEncoder(encoder_name, max_length, encoder, random_weights=random_weights)
    return _embed_cached(captions, lazy, pooling, batch_size)


def split_embeddings(
    dataset: PairDataset,
    text_spec: TextSpec,
    encoder_name: str | None = None,
    splits: tuple[str, ...] | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Embeddings of the captions of `splits` (default all); the encoder defaults to the source, with the
    spec's weights (published or random)."""
    random_weights = text_spec.weights == "random"
    lazy = _LazyEncoder(
        encoder_name or text_spec.source, text_spec.max_length, None, progress, random_weights
    )
    return {
        name: _embed_cached(split.captions, lazy, text_spec.pooling, text_spec.batch_size)
        for name, split in dataset.splits.items()
        if splits is None or name in splits
    }


def missing_splits(
    dataset: PairDataset, text_spec: TextSpec, encoder_name: str | None = None, splits: tuple[str, ...] = ()
) -> list[str] | None:
    """The splits among `splits` (default all) whose embeddings are not cached, found without loading any
    model; None when unknown: the encoder's fingerprint (part of the key) is known once it was loaded."""
    from mdd_bench.models.text import known_fingerprint

    name = encoder_name or text_spec.source
    lazy = _LazyEncoder(name, text_spec.max_length, random_weights=text_spec.weights == "random")
    fingerprint = known_fingerprint(name, lazy._weights(build=False), lazy.random_weights)
    if fingerprint is None:
        return None
    return [
        split_name
        for split_name, split in dataset.splits.items()
        if (not splits or split_name in splits)
        and not _cache_path(list(split.captions), lazy, fingerprint, text_spec.pooling).is_file()
    ]
