"""The runner's shared types: a cell job, its outcome and statuses, the datasets a worker loads once.

The cell machinery (`cell.py`, `execute.py`), the executors and the dry run all build on these, and
none of them on another to get at a type."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mdd_bench.api import Method
    from mdd_bench.data import PairDataset
    from mdd_bench.protocol import Protocol
    from mdd_bench.run.config import Cell

# done: run here; finished: found done by another run once the lock was ours; busy: another run holds it
DONE, FINISHED, FAILED, BUSY = "done", "finished", "failed", "busy"
DRAINED = "not started"  # the drain file appeared before the cell's turn (`--drain-file`)


@dataclass(frozen=True)
class CellJob:
    """A cell to run: what it is, under which protocol (with its dataset) and where its files go."""

    cell: Cell
    protocol: Protocol
    method_cls: type[Method]
    path: Path  # the result JSON
    # An ablation variant: its hyper-parameter overrides (on top of the run's --set) and the
    # {"group", "variant", "order"} key its result carries.
    overrides: dict[str, str] = field(default_factory=dict, compare=False)
    ablation: dict[str, Any] | None = field(default=None, compare=False)
    # An extension of a finished cell: the (image, text) encoder pairs its result lacked when planned
    # (rechecked under the lock); empty for a cell to distil and evaluate.
    extend: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    # A finished cell re-run whole (`RunConfig.redistill`): `--archs all` lacks pairs and its saved set.
    redo: bool = field(default=False, compare=False)

    @property
    def label(self) -> str:
        c = self.cell
        variant = f" {self.ablation['group']}/{self.ablation['variant']}" if self.ablation else ""
        return f"{c.method}{variant} {c.dataset} budget={c.budget} seed={c.seed}"

    @property
    def short(self) -> str:
        variant = f"{self.path.parent.parent.name}/{self.path.parent.name}/" if self.ablation else ""
        return f"{self.cell.method}/{variant}{self.path.stem}"

    @property
    def error_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.error.txt")

    @property
    def log_path(self) -> Path:
        return self.path.with_name(f"{self.path.stem}.log")

    @property
    def set_base(self) -> Path:
        return self.path.parent / "sets" / self.path.stem

    @property
    def set_file(self) -> Path:
        """The saved set's tensors."""
        return self.set_base.with_name(self.set_base.name + ".safetensors")

    @property
    def set_sidecar(self) -> Path:
        """The saved set's JSON sidecar (provenance, extras' metadata)."""
        return self.set_base.with_name(self.set_base.name + ".json")

    def track_set_file(self, track: str) -> Path:
        """The set a track was evaluated on: the track's own (`<stem>.<track>`, saved when its val chose
        another iteration than hard's), else the cell's set."""
        own = self.set_base.with_name(f"{self.set_base.name}.{track}.safetensors")
        return own if track != "hard" and own.is_file() else self.set_file

    @property
    def has_saved_set(self) -> bool:
        """Both files of the saved set are there, so the cell can be extended from it."""
        return self.set_file.is_file() and self.set_sidecar.is_file()

    @property
    def announce(self) -> str:
        """The line an executor says when it starts the job."""
        if self.redo:
            return f"redo {self.label}: its saved set is gone, so it is distilled again for every pair"
        if not self.extend:
            return f"run  {self.label}"
        count = len(self.extend)
        pairs = f"{count} unseen pair{'s' if count != 1 else ''}"
        return f"extend {self.label}: evaluating {pairs} from its saved set"

    @property
    def artifacts(self) -> tuple[str, ...]:
        """The method's artifacts; an extension distils nothing, so it needs none of them."""
        return () if self.extend else tuple(self.method_cls.artifacts)

    def previous_error(self) -> str | None:
        """The error line a failed earlier attempt left, if any."""
        try:
            return self.error_path.read_text().strip() or None
        except OSError:
            return None


@dataclass
class CellOutcome:
    job: CellJob
    status: str  # DONE | FINISHED | FAILED | BUSY | DRAINED
    error: str | None = None
    stages: dict[str, float] = field(default_factory=dict)


class DatasetCache:
    """Datasets loaded once per process (a worker serves many cells of one dataset)."""

    def __init__(self, data_root: Path | None, progress: bool) -> None:
        self.data_root, self.progress = data_root, progress
        self._loaded: dict[tuple[str, str], PairDataset] = {}

    def get(self, protocol: Protocol) -> PairDataset:
        from mdd_bench.data import load_dataset

        key = (protocol.data.dataset, protocol.hash)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(
                protocol.data.dataset, protocol, self.data_root, progress=self.progress
            )
        return self._loaded[key]


def error_line(exc: BaseException) -> str:
    """`Type: first line of the message`: what the error file and the summary say."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
