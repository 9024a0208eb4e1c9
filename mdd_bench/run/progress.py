"""What a run shows and keeps about its own progress: stage timings, the grid bar, the per-cell log.

A grid of hours must say where the time goes (the first-run breakdown), what it is doing now (one bar
for the grid, the running stage's own bar below it) and, per cell, what happened (a log file next to
the result, with the traceback when the cell failed).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

# Stages in the order a cell meets them; the timing breakdown is printed in this order.
STAGES = (
    "data",
    "text features",
    "anchor",
    "reference model",
    "experts",
    "distill",
    "evaluate",
    "random baseline",
    "full-data upper bound",
    "report",
)


@dataclass
class StageClock:
    """Seconds spent per stage; `on_stage` hears each stage as it starts (the grid bar's postfix)."""

    seconds: dict[str, float] = field(default_factory=dict)
    on_stage: Callable[[str], None] | None = None
    on_done: Callable[[str, float], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_stage is not None:
            self.on_stage(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.seconds[name] = self.seconds.get(name, 0.0) + spent
            if self.on_done is not None:
                self.on_done(name, spent)

    def add(self, seconds: dict[str, float]) -> None:
        for name, value in seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + value


def breakdown_rows(seconds: dict[str, float], wall_s: float, other: bool = True) -> list[list[str]]:
    """Rows (stage, seconds, share of the wall time) in stage order, then the rest of the wall time as
    `other` (not when the stages ran in parallel: their sum may exceed the wall time)."""
    order = [s for s in STAGES if s in seconds] + sorted(set(seconds) - set(STAGES))
    rows = [[name, f"{seconds[name]:.1f}", f"{100 * seconds[name] / wall_s:.0f}%" if wall_s else "-"]
            for name in order]  # fmt: skip
    rest = wall_s - sum(seconds.values())
    if other and rest >= 0.05:
        rows.append(["other (start-up, loading, writing)", f"{rest:.1f}", f"{100 * rest / wall_s:.0f}%"])
    rows.append(["total (wall)", f"{wall_s:.1f}", "100%"])
    return rows


class GridBar:
    """The grid's bar (one tick per cell run); its postfix names the cell and stage now running."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc="grid", unit="cell", disable=not enabled or total == 0, position=0)

    def show(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=True)

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class CellLog:
    """Append-only log of one cell (`b100-s0.log` beside its result): attempts, stages, tracebacks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        for part in line.rstrip("\n").split("\n"):
            self._fh.write(f"{stamp} {part}\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
