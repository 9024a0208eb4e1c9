"""What one `mdd-bench run` is asked to do: the grid's cells and the run's settings, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import TRACKS
from mdd_bench.protocol import Protocol


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    budget: int
    seed: int

    def path(self, out: Path, protocol: Protocol) -> Path:
        return Path(out) / protocol.name / self.dataset / self.method / f"b{self.budget}-s{self.seed}.json"


@dataclass
class RunConfig:
    methods: list[str]
    datasets: list[str]
    budgets: list[int]
    seeds: list[int] = field(default_factory=lambda: [0])  # deterministic methods run the first only
    archs: str = "source"
    tracks: list[str] = field(default_factory=lambda: ["hard", "native"])
    out: Path = Path("runs")
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    data_root: Path | None = None
    repetitions: int | None = None
    device: str = "cpu"
    executor: str = "local"  # local (in-process) | ray (one task per cell and per shared artifact)
    address: str | None = None  # Ray cluster to join; None starts a local Ray
    cpus_per_task: float | None = None  # torch threads per cell (Ray: also its CPU request, default 1)
    gpus_per_task: float = 0.0  # Ray GPU request per cell
    ray_cpus: int | None = None  # CPUs of the local Ray this run starts (default: every core)
    # The full-data upper bound's repetitions. None: only what the methods need (repetition 0 is the
    # coreset baselines' feature model); N: train it to N repetitions for every dataset of the grid.
    full_data_repetitions: int | None = None
    # Improvement over random: add `random` cells to a grid of other methods, and give every native
    # track with extras a random baseline trained with the same kind of extras.
    random_baseline: bool = True
    # `--archs all` on a finished cell whose saved set is gone (sets are not committed): re-run it whole
    # (distil and evaluate every pair) instead of failing; its result is replaced only once the new one
    # is written, so a failed re-run keeps it.
    redistill: bool = False


def check_tracks(tracks: list[str]) -> None:
    for track in tracks:
        if track not in TRACKS:
            raise MddError(f"Unknown track '{track}'. Use: {', '.join(TRACKS)}.")


def parse_overrides(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`--set mdm.lr_img=500` -> {"mdm": {"lr_img": "500"}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, param = key.partition(".")
        if not sep or not dot or not method or not param:
            raise MddError(
                f"--set '{item}' must look like METHOD.PARAM=VALUE, e.g. --set herding.features=image."
            )
        out.setdefault(method, {})[param] = value
    return out
