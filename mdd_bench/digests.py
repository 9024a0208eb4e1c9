"""Which cached artifacts a cell read, and a digest of each, recorded in its result.

The anchors, expert trajectories, full-data reference, distilled text student and text features are
trained or computed on the machine that first needs them and kept in the cache, not in the results.
Their bits depend on where they were built: the same code at another thread count sums in another
order (an expert set rebuilt at one thread moved a TESLA val check from 24.66 to 24.81). A grid run
over several sessions or machines may so compare cells that stood on different artifacts; the digest
in each result (`artifacts`: cache name -> sha256 prefix) makes that visible, and the report says when
the cells it compares disagree.

Loaders call `note_artifact(path)` whenever they hand out an artifact; a cell collects them inside
`artifact_log()`. Outside one nothing is recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from mdd_bench.cache import home

DIGEST_CHARS = 16
_LOG: ContextVar[dict[str, Path] | None] = ContextVar("mdd_bench_artifact_log", default=None)
# (path, size, mtime_ns) -> digest: a cell reads the same ~40 MB of artifacts many times.
_MEMO: dict[tuple[str, int, int], str] = {}


def artifact_name(path: Path) -> str:
    """`path` relative to the cache root (`experts/cpu-shapes-...`), or as given when outside it."""
    path = Path(path)
    try:
        return path.resolve().relative_to((home() / "cache").resolve()).as_posix()
    except ValueError:
        return str(path)


def note_artifact(path: Path) -> None:
    """Record that the running cell uses the artifact at `path` (a file or a folder)."""
    log = _LOG.get()
    if log is not None:
        log[artifact_name(path)] = Path(path)


@contextmanager
def artifact_log() -> Iterator[dict[str, Path]]:
    """Collect the artifacts noted inside the block: cache name -> path."""
    log: dict[str, Path] = {}
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


def data_files(path: Path) -> list[Path]:
    """The files whose bytes are the artifact: a file itself, or a folder's files (recursively, sorted by
    relative name) less its JSON (manifests and scores written beside the data), locks and temporaries."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    files = [
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix not in (".json", ".lock", ".tmp")
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(path).as_posix())


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MEMO:
        sha = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        _MEMO[key] = sha.hexdigest()
    return _MEMO[key]


def artifact_digest(path: Path) -> str | None:
    """sha256 (first 16 hex) over the artifact's data files, None when it has none.

    A single file's digest is the sha256 of its bytes; a folder's hashes each file's relative name and
    digest in order, so renaming or adding a file changes it.
    """
    path = Path(path)
    files = data_files(path)
    if not files:
        return None
    if path.is_file():
        return _file_digest(path)[:DIGEST_CHARS]
    sha = hashlib.sha256()
    for f in files:
        sha.update(f"{f.relative_to(path).as_posix()}\0{_file_digest(f)}\n".encode())
    return sha.hexdigest()[:DIGEST_CHARS]


def digests(log: dict[str, Path]) -> dict[str, str]:
    """The log's artifacts that exist on disk, each with its digest, by name."""
    out = {name: artifact_digest(path) for name, path in sorted(log.items())}
    return {name: digest for name, digest in out.items() if digest is not None}


def logged_digests() -> dict[str, str]:
    """`digests` of the innermost open `artifact_log` so far ({} outside one)."""
    return digests(_LOG.get() or {})


def merge_digests(recorded: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """`recorded` with `new`'s names added; a name whose digest differs keeps both, comma-separated (an
    extension evaluated against another build of an artifact than the cell was)."""
    out = dict(recorded)
    for name, digest in new.items():
        have = out.get(name)
        if have is None:
            out[name] = digest
        elif digest not in have.split(","):
            out[name] = f"{have},{digest}"
    return dict(sorted(out.items()))
