"""Content-addressed on-disk cache and atomic writes, shared by every artifact."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def home() -> Path:
    """Root of everything mdd-bench stores (`$MDD_BENCH_HOME`, default `~/.cache/mdd-bench`)."""
    return Path(os.environ.get("MDD_BENCH_HOME", Path.home() / ".cache" / "mdd-bench")).expanduser()


def cache_dir(kind: str) -> Path:
    path = home() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_data_root() -> Path:
    return Path(os.environ.get("MDD_BENCH_DATA", home() / "data")).expanduser()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object (keys sorted), so equal configs give equal keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (setting it is process-wide)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder then rename, so readers never see half a file.

    mkstemp creates the file 0600; it gets the mode an ordinary write would (0666 less the umask), so
    results and cache files stay readable by the other users and nodes sharing `MDD_BENCH_HOME`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def atomic_save_npy(path: Path, array: Any) -> Path:
    import numpy as np

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.save(fh, array)

    return atomic_write(path, write)
