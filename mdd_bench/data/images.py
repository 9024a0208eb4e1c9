"""Image storage: small datasets become one cached uint8 tensor, large ones are read lazily."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from mdd_bench.cache import atomic_save_npy, cache_dir, stable_hash
from mdd_bench.errors import MddError
from mdd_bench.locks import build_once
from mdd_bench.protocol import Protocol

# Above this many bytes of uint8 pixels a split is read from disk on demand instead of cached.
MAX_CACHED_BYTES = int(os.environ.get("MDD_BENCH_MAX_CACHED_BYTES", 3 * 2**30))


def read_image(path: Path, resolution: int) -> np.ndarray:
    """RGB uint8 [3, R, R]; bicubic resize as the references' test transform."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (resolution, resolution):
                img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except FileNotFoundError:
        raise MddError(
            f"Image file '{path}' is missing. Check --data-root points at the dataset's images."
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise MddError(f"Image file '{path}' cannot be read ({exc}). Re-download or remove it.") from None


class ImageStore:
    """A split's images at the protocol resolution, indexed like a list."""

    resolution: int

    def __len__(self) -> int:
        raise NotImplementedError

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """uint8 [n, 3, R, R] for the given image indices."""
        raise NotImplementedError

    def all(self) -> torch.Tensor:
        return self.get(np.arange(len(self)))


class TensorImages(ImageStore):
    def __init__(self, pixels: torch.Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError("pixels must be uint8 [n, 3, R, R]")
        self.pixels = pixels
        self.resolution = int(pixels.shape[-1])

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        return self.pixels[torch.as_tensor(np.asarray(indices, dtype=np.int64))]

    def all(self) -> torch.Tensor:
        return self.pixels


class LazyImages(ImageStore):
    """Decodes on access; `read` maps an index to uint8 [3, R, R]."""

    def __init__(self, count: int, read: Callable[[int], np.ndarray], resolution: int) -> None:
        self.count = count
        self.read = read
        self.resolution = resolution

    def __len__(self) -> int:
        return self.count

    def get(self, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        arrays = [self.read(int(i)) for i in np.asarray(indices).reshape(-1)]
        if not arrays:
            return torch.empty(0, 3, self.resolution, self.resolution, dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays))


def decode_all(count: int, read: Callable[[int], np.ndarray], resolution: int, desc: str) -> np.ndarray:
    out = np.empty((count, 3, resolution, resolution), dtype=np.uint8)
    for i in tqdm(range(count), desc=desc, unit="img", disable=count < 500, leave=False):
        out[i] = read(i)
    return out


def cached_pixels(
    key_parts: object, count: int, read: Callable[[int], np.ndarray], resolution: int, desc: str
) -> ImageStore:
    """Decode once into a content-addressed `.npy`; later loads read that one file."""
    if count * 3 * resolution * resolution > MAX_CACHED_BYTES:
        return LazyImages(count, read, resolution)
    path = cache_dir("images") / f"{stable_hash([key_parts, resolution, count])}.npy"
    build_once(path, path.exists, lambda: atomic_save_npy(path, decode_all(count, read, resolution, desc)))
    return TensorImages(torch.from_numpy(np.load(path)))


def file_images(paths: Sequence[Path], resolution: int, desc: str = "images") -> ImageStore:
    """Images stored as files; the cache key covers each file's path, size and mtime."""
    stats = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise MddError(
                f"Image file '{p}' is missing. Check --data-root points at the dataset's images."
            ) from None
        stats.append((str(p), st.st_size, st.st_mtime_ns))
    return cached_pixels(stats, len(paths), lambda i: read_image(paths[i], resolution), resolution, desc)


def normaliser(protocol: Protocol) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(protocol.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(protocol.data.std).view(1, 3, 1, 1)
    return lambda pixels: (pixels.float() / 255.0 - mean) / std
