"""Distillation checkpoints: a cell stopped mid-run resumes from its last val check, bit for bit.

At every check the loop saves what the rest of the run depends on: its own selection state (curves,
best states, plateau count), the method's run state (`Resumable`: synthetic tensors, optimiser, every
random stream it draws from, model buffers) and the process's global random states. A resumed run
therefore gives what the uninterrupted one gives (tests/test_resume.py checks every iterative method).

A checkpoint is keyed by what determines the run (protocol hash, method, hyper-parameters, budget,
seed, device, selection tracks); one whose key differs is stale and the run starts afresh. Only the
work since the last check is lost, and only the seconds up to that check are added to the cell's time.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from mdd_bench.cache import atomic_write

FORMAT = 1  # bump when what a checkpoint holds changes: older files are then stale


@runtime_checkable
class Resumable(Protocol):
    """A method's run state that the loop can save at a check and restore in a new process."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def rng_state(generator: np.random.Generator | torch.Generator) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    return generator.bit_generator.state


def set_rng_state(generator: np.random.Generator | torch.Generator, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


def global_rng_state(device: torch.device) -> dict[str, Any]:
    """torch's (and CUDA's on a GPU), numpy's and Python's global streams."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_global_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's buffers (running statistics a train-mode forward updates), copied to the CPU."""
    return {name: b.detach().to("cpu", copy=True) for name, b in module.named_buffers()}


@torch.no_grad()
def load_buffers(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, b in module.named_buffers():
        b.copy_(state[name])


@torch.no_grad()
def load_tensors(tensors: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """Copy `values` into `tensors` in place, so optimisers keep their references."""
    if len(tensors) != len(values):
        raise ValueError(f"{len(values)} saved tensors for {len(tensors)}")
    for tensor, value in zip(tensors, values, strict=True):
        tensor.copy_(value)


@dataclass
class Checkpoint:
    """Where one cell's distillation checkpoint lives, and the key it must carry to be resumed."""

    path: Path
    key: dict[str, Any]

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.key = json.loads(json.dumps({"format": FORMAT, **self.key}, sort_keys=True, default=str))

    def save(self, payload: dict[str, Any]) -> None:
        atomic_write(self.path, lambda tmp: torch.save({"key": self.key, **payload}, tmp))

    def load(self) -> dict[str, Any] | None:
        """The saved payload, or None when there is none, it is unreadable or its key differs."""
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # a file a crash cut short: start afresh, it is overwritten at the next check
            return None
        if not isinstance(payload, dict) or payload.get("key") != self.key:
            return None
        return payload

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def checkpoint_path(result_path: Path) -> Path:
    """A cell's checkpoint beside its result file, hidden (ignored by git like the cell's lock)."""
    result_path = Path(result_path)
    return result_path.with_name(f".{result_path.stem}.distill.pt")
