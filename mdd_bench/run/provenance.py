"""What a result records about where it came from: versions, the git commit, peak memory."""

from __future__ import annotations

import platform
import subprocess
import threading
from pathlib import Path

import psutil
import torch

from mdd_bench import __version__


class PeakMemory:
    """Peak resident memory (MB) while the block runs, sampled every 20 ms; CUDA peak when on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()

    @staticmethod
    def _rss_mb() -> float:
        return psutil.Process().memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())
        if self.device.type == "cuda":
            self.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | int | None]:
    """Versions, commit and torch's CPU thread count: training on the CPU gives the same floats only at
    the same thread count (reductions split differently), and herding's and k-center's selections follow
    the reference model's floats, so a result that does not reproduce elsewhere can be told apart."""
    import timm
    import transformers

    return {
        "mdd_bench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
