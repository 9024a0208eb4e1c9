"""What one `mdd-bench run` is asked to do: the grid's cells and the run's settings, validated once.

The CLI only parses; `RunConfig.from_options` turns its strings into a config with the protocol's
defaults filled in, and `RunConfig.validate` is the one place a bad combination of options becomes a
one-line error (the grid calls it too, for configs built in Python).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # Tuned values (`mdd-bench tune`): "packaged" (the protocol's own file, if any), "none", or a path.
    tuned: str = "packaged"
    # Once this file exists no further cell starts; running ones finish (a planned stop loses no work).
    drain_file: Path | None = None

    def draining(self) -> bool:
        return self.drain_file is not None and Path(self.drain_file).exists()

    def validate(self) -> RunConfig:
        """Every option alone and in combination; raises the first problem as one line."""
        check_tracks(self.tracks)
        if self.archs not in ARCHS:
            raise MddError(f"Unknown --archs '{self.archs}'. Use {' or '.join(ARCHS)}.")
        if not self.methods:
            raise MddError("No method to run: name one with --methods (see `mdd-bench list methods`).")
        if not self.datasets:
            raise MddError("No dataset to run: name one with --dataset (see `mdd-bench list datasets`).")
        if not self.budgets or any(b <= 0 for b in self.budgets):
            raise MddError(f"--budgets needs positive integers, got {self.budgets}.")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise MddError(f"--seeds needs non-negative integers, got {self.seeds}.")
        if self.repetitions is not None and self.repetitions < 1:
            raise MddError(f"--repetitions needs a positive integer, got {self.repetitions}.")
        if self.executor not in EXECUTORS:
            raise MddError(f"Unknown executor '{self.executor}'. Use: {', '.join(EXECUTORS)}.")
        if self.executor == "local":  # the device must exist here; with Ray each worker resolves its own
            from mdd_bench.workspace import resolve_device

            resolve_device(self.device)
        if self.address and self.executor != "ray":
            raise MddError("--address names a Ray cluster: add --executor ray.")
        if self.redistill and self.archs != "all":
            raise MddError(
                "--redistill-missing-sets only acts with --archs all (a cell re-run to reach every "
                "encoder pair); add --archs all or drop the flag."
            )
        if self.tuned not in ("packaged", "none") and not Path(self.tuned).is_file():
            raise MddError(
                f"--tuned {self.tuned}: no such file. Pass a tuned.toml that `mdd-bench tune` wrote, "
                "packaged, or none."
            )
        strangers = sorted(set(self.overrides) - set(self.methods))
        if strangers:
            raise MddError(f"--set names method '{strangers[0]}', which is not in --methods.")
        return self

    @classmethod
    def from_options(
        cls,
        protocol: Protocol,
        methods: list[str],
        datasets: str | None = None,
        budgets: str | None = None,
        seeds: str | None = None,
        tracks: str = "hard,native",
        sets: tuple[str, ...] = (),
        **settings: Any,
    ) -> RunConfig:
        """A validated config from the CLI's strings (comma lists, `--set` items), the protocol's
        dataset, first budget and seeds where none are given; `settings` are the other fields as is."""
        config = cls(
            methods=methods,
            datasets=[d.strip() for d in (datasets or protocol.data.dataset).split(",") if d.strip()],
            budgets=int_list(budgets, "--budgets") if budgets else [protocol.budgets[0]],
            seeds=int_list(seeds, "--seeds") if seeds else list(protocol.seeds),
            tracks=[t.strip() for t in tracks.split(",") if t.strip()],
            overrides=parse_overrides(sets),
            **settings,
        )
        return config.validate()


ARCHS = ("source", "all")
EXECUTORS = ("local", "ray")  # local: in-process, in turn; ray: one task per cell and per shared artifact


def resolve_methods(text: str | None) -> list[str]:
    """`--methods`: names (each checked, with a did-you-mean), `all` (every method this version can run),
    or nothing: the coreset baselines, the quick first run."""
    from mdd_bench.registry import list_methods, parse_method_names

    methods = list_methods()
    available = [n for n, cls in methods.items() if not cls.missing_artifacts()]
    if text and text.strip() != "all":
        names = parse_method_names(text)
        for name in names:
            missing = methods[name].missing_artifacts()
            if missing:
                raise MddError(
                    f"Method '{name}' needs {', '.join(missing)}, which this version cannot build."
                )
        return names
    if text:
        return available
    return [n for n in available if methods[n].family == "coreset"] or available


def int_list(text: str, option: str) -> list[int]:
    """`--budgets 100,200` -> [100, 200]; range checks are `RunConfig.validate`'s."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MddError(f"{option} takes comma-separated integers, got '{text}'.") from None
    if not values:
        raise MddError(f"{option} takes comma-separated integers, got '{text}'.")
    return values


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
