"""User-facing errors: one line that names the problem and the fix, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MddError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{hint} Known: {', '.join(choices)}."


def unknown(kind: str, name: str, choices: Iterable[str]) -> MddError:
    return MddError(f"Unknown {kind} '{name}'.{did_you_mean(name, choices)}")


def cannot_write(path: object, exc: OSError) -> MddError:
    """An OSError writing a file the user named (a folder that cannot hold files, a full disk) as the one
    line naming it and the fix, where the temporary file's name in the OSError would name neither."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return MddError(f"Cannot write '{path}' ({reason}). Choose a place you can write (--out).")


class NonFiniteLoss(MddError):
    """A distillation's loss became NaN or infinite (the tuner records the trial as failed)."""
