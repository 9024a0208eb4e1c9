"""File locks: one per result cell and one per shared artifact, so concurrent runs never collide.

Two `mdd-bench run`s pointed at one output folder (or the Ray tasks of one run on a shared filesystem)
must never run or write the same cell, and two workers needing one artifact must build it once: the
first builds, the others wait and then find it done. The locks are OS locks (`filelock`, flock on
POSIX): a process killed with SIGKILL releases them, so a crash never leaves a cell or an artifact
locked forever. Lock files sit next to what they guard, hidden (`.<name>.lock`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T")


def lock_path(target: Path) -> Path:
    """The lock file guarding `target` (a file or a folder): a hidden sibling."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def remove_stale_temps(target: Path) -> None:
    """Delete temporary files a killed writer of `target` left behind (`cache.atomic_write` names them
    `.<name>.<random>.tmp`). Call it only while holding `target`'s lock: nobody else writes it then."""
    target = Path(target)
    if target.parent.is_dir():
        for tmp in target.parent.glob(f".{target.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


@contextmanager
def artifact_lock(target: Path) -> Iterator[None]:
    """Hold `target`'s lock, waiting for whoever holds it (they are building the same thing)."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        remove_stale_temps(target)
        yield


def build_once(target: Path, is_done: Callable[[], bool], build: Callable[[], T]) -> T | None:
    """Run `build` unless `is_done()`; concurrent callers wait for the first and then see it done.

    The check runs once without the lock (a hit costs no lock file) and again inside it, so the second
    of two callers reuses what the first built instead of building it again.
    """
    if is_done():
        return None
    with artifact_lock(target):
        if is_done():
            return None
        return build()


@contextmanager
def try_cell_lock(result: Path) -> Iterator[bool]:
    """Try to take a cell's lock without waiting; yields False when another run holds it."""
    path = lock_path(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def is_locked(result: Path) -> bool:
    """Whether another process holds the cell's lock now (for `--dry-run`; never blocks)."""
    path = lock_path(result)
    if not path.exists():
        return False
    with try_cell_lock(result) as held:
        return not held
