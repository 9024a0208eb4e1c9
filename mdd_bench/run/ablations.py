"""`mdd-bench ablate`: a method's declared ablation groups as cells, each variant run once."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdd_bench.api import Method
from mdd_bench.cache import atomic_write_json
from mdd_bench.errors import MddError, did_you_mean
from mdd_bench.protocol import Protocol
from mdd_bench.record import read_result
from mdd_bench.registry import get_method
from mdd_bench.run.config import Cell, RunConfig
from mdd_bench.run.executors import make_executor
from mdd_bench.run.grid import GridRun, for_workers
from mdd_bench.run.jobs import CellJob
from mdd_bench.run.preflight import preflight


@dataclass(frozen=True)
class AblationVariant:
    group: str
    order: int
    variant: str
    overrides: dict[str, Any]

    def path(self, cell: Cell, out: Path, protocol: Protocol) -> Path:
        slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.variant).strip("_")
        folder = Path(out) / protocol.name / cell.dataset / cell.method / f"ablation-{self.group}"
        return folder / slug / f"b{cell.budget}-s{cell.seed}.json"


def ablation_variants(cls: type[Method], groups: list[str] | None = None) -> list[AblationVariant]:
    """The method's declared ablation groups (all, or the named ones) as variants in display order."""
    declared = cls.ablations
    if not declared:
        raise MddError(f"Method '{cls.name}' declares no ablation groups.")
    for group in groups or []:
        if group not in declared:
            raise MddError(
                f"Method '{cls.name}' has no ablation group '{group}'.{did_you_mean(group, declared)}"
            )
    return [
        AblationVariant(group, k, variant, dict(overrides))
        for group, variants in declared.items()
        if not groups or group in groups
        for k, (variant, overrides) in enumerate(variants.items())
    ]


@dataclass
class AblationPlan:
    """The cells an ablation must run, and the variants that reuse another variant's identical run."""

    jobs: list[CellJob]  # every variant to run, each under its own result path
    copies: list[tuple[Path, Path, dict[str, Any]]]  # (variant path, identical run's path, ablation key)
    paths: list[Path]  # every variant's result path, in display order


def plan_ablations(
    protocol: Protocol, config: RunConfig, groups: list[str] | None = None, log=print
) -> AblationPlan:
    """Every declared ablation variant of one method as a cell job with an `ablation` key.

    Variants that resolve to the same hyper-parameters (the "as configured" one of every group) are
    distilled and evaluated once, then written under each group; an ordinary `mdd-bench run` result of
    the same cell with the same hyper-parameters counts as that run.
    """
    if len(config.methods) != 1:
        raise MddError("Ablations run one method at a time.")
    name = config.methods[0]
    cls = get_method(name)
    variants = ablation_variants(cls, groups)
    plan = AblationPlan([], [], [])
    for dataset_name in config.datasets:
        proto = protocol.with_dataset(dataset_name)
        for budget in config.budgets:
            for seed in config.seeds[:1] if cls.deterministic else config.seeds:
                cell = Cell(name, dataset_name, budget, seed)
                source: dict[str, Path] = {}  # hyper-parameters -> a result (or planned result) with them
                main = cell.path(config.out, proto)  # the ordinary run of this cell, when present
                if main.exists():
                    source[json.dumps(read_result(main).get("hparams", {}), sort_keys=True)] = main
                for v in variants:
                    path = v.path(cell, config.out, proto)
                    plan.paths.append(path)
                    overrides = {k: str(x) for k, x in v.overrides.items()}
                    merged = {**config.overrides.get(name, {}), **overrides}
                    method = cls.for_protocol(proto, merged, budget, config.tuned)
                    same = json.dumps(method.describe()["hparams"], sort_keys=True)
                    ablation = {"group": v.group, "variant": v.variant, "order": v.order}
                    if path.exists():
                        log(f"skip {name} {v.group}/{v.variant} budget={budget} seed={seed}: {path} exists")
                    elif same in source:
                        plan.copies.append((path, source[same], ablation))
                    else:
                        plan.jobs.append(CellJob(cell, proto, cls, path, overrides, ablation))
                    source.setdefault(same, path)
    return plan


def run_ablations(
    protocol: Protocol, config: RunConfig, groups: list[str] | None = None, log=print, progress: bool = True
) -> GridRun:
    """Run the planned variants with the configured executor (each under its lock, failures recorded
    per cell as in `mdd-bench run`), then write the variants that reuse an identical run."""
    start = time.perf_counter()
    config = for_workers(config)
    plan = plan_ablations(protocol, config, groups, log)  # its jobs are the variants not on disk
    preflight(protocol, config, plan.jobs)
    report = make_executor(config).run(plan.jobs, [], config, log, progress)
    for path, source, ablation in plan.copies:
        if not path.exists() and source.exists():
            log(f"same {config.methods[0]} {ablation['group']}/{ablation['variant']}: reusing {source}")
            atomic_write_json(path, {**read_result(source), "ablation": ablation})
    results = [read_result(path) for path in plan.paths if path.exists()]
    return GridRun(
        plan.jobs, results, report.outcomes, report.errors, report.stages, time.perf_counter() - start
    )
