"""Reading and writing the references' `.pt` files without ever running a pickle's code.

The references save with `torch.save` (pickles). `torch.load(weights_only=True)` reads tensors, lists,
dicts and numbers and refuses anything that would import and run other code; a file that needs more
is refused with one line that says why, never loaded with full unpickling. So is a file that is no
`torch.save` file at all (empty, cut short, text): whatever the unpickler raises, the user gets one line
naming the file, never a traceback from inside torch.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mdd_bench.cache import atomic_write
from mdd_bench.errors import MddError, cannot_write

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_pt(path: str | Path, what: str = "File", mmap: bool = False) -> Any:
    """The object in a `torch.save` file, on the CPU, read with `weights_only=True` only.

    `mmap`: map the tensors instead of reading them (multi-GB expert files), where the file's format
    allows it (the zip format of torch >= 1.6); an older file is read whole.
    """
    path = Path(path)
    if not path.is_file():
        raise MddError(f"{what} '{path}' does not exist.")
    if path.stat().st_size == 0:
        raise _unreadable(path, what, "the file is empty")
    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise MddError(
                f"'{path}' needs full unpickling (it references {found.group(1)}), which can run "
                "arbitrary code, so mdd-bench refuses it. Re-save it with plain tensors, lists and dicts."
            ) from None
        raise _unreadable(path, what, "damaged or another format") from None
    except Exception as exc:  # text or damaged bytes fail anywhere in the unpickler
        # (a text file holding `hello` is KeyError: 101; others are EOFError, RuntimeError, ValueError...)
        raise _unreadable(path, what, _first_line(exc)) from None


def _unreadable(path: Path, what: str, reason: str) -> MddError:
    return MddError(
        f"{what} '{path}' is not a readable torch.save file ({reason}). Pass the .pt file the reference "
        "saved, whole (a copy cut short or a text file cannot be read)."
    )


def _first_line(exc: BaseException) -> str:
    """The exception's first sentence, with its type: what the file did to the reader, short (torch's
    damaged-zip message runs on for a paragraph about how checkpoints get corrupted)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].split('. ')[0][:160]}" if text else type(exc).__name__


def save_pt(path: str | Path, obj: Any) -> Path:
    """`torch.save` through a temporary file, so a reader never sees half a file."""
    try:
        return atomic_write(Path(path), lambda p: torch.save(obj, p))
    except OSError as exc:
        raise cannot_write(path, exc) from None


def as_tensor(value: Any, key: str, path: Path) -> torch.Tensor:
    """A file's entry that must be a tensor (a number is accepted for a scalar such as a step size)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return torch.tensor(float(value))
    raise MddError(f"'{path}': '{key}' should be a tensor but is a {type(value).__name__}.")


def need_dict(obj: Any, path: Path, required: tuple[str, ...], source: str) -> dict[str, Any]:
    """The file's dict, with every required key present (a missing one names what the file has)."""
    if not isinstance(obj, dict):
        raise MddError(
            f"'{path}' holds a {type(obj).__name__}, not the dict of a {source} save "
            f"(keys {', '.join(required)}). Is --from {source} right?"
        )
    missing = [k for k in required if k not in obj]
    if missing:
        have = ", ".join(map(str, obj)) or "nothing"
        raise MddError(
            f"'{path}' lacks key '{missing[0]}' of a {source} save (it has {have}). Is --from {source} right?"
        )
    return obj
