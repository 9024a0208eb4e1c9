"""The pre-flight check of a grid: what every cell would find missing, asked once before any cell starts.

Without it a grid whose data or weights are missing started every cell, each failed on the same missing
piece, and the run ended in an error naming every failed cell, after writing an error file and a log per
cell. A budget larger than the dataset's training pairs failed the same way. Here the first missing piece
is one line naming it and the fix, and nothing is written.

In order, for every dataset the pending cells use: its folder is there and readable, its annotations
parse, and every pending budget fits its training pairs (all through the loader itself without decoding
an image: `mdd_bench.data.train_pairs`); then every hub file the encoders would fetch is cached, or
reachable when online (`mdd_bench.models.hub_cache`). What needs no hub is skipped: `[image] pretrained`
"anchor" or "none", random text weights, and any text encoder that loads nothing from the hub (packaged,
trained, a local folder).
A grid joining a Ray cluster (`--address`) is not checked here: its workers resolve their own files.
"""

from __future__ import annotations

from mdd_bench.data import train_pairs
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import arch_grid, check_pairs
from mdd_bench.models.hub_cache import HubFiles, hub_problem, image_files, text_files
from mdd_bench.protocol import Protocol
from mdd_bench.run.config import RunConfig
from mdd_bench.run.jobs import CellJob


def preflight(protocol: Protocol, config: RunConfig, jobs: list[CellJob]) -> None:
    """Raise the first problem the cells `jobs` (those to run) would meet, as one line; None to go."""
    datasets = list(dict.fromkeys(j.cell.dataset for j in jobs))
    if config.full_data_repetitions:  # the full-data upper bound trains on every dataset of the grid
        datasets = list(dict.fromkeys([*datasets, *config.datasets]))
    if not datasets or config.address:
        return
    for name in datasets:
        pairs = train_pairs(name, protocol.with_dataset(name), config.data_root)  # None: not countable
        for budget in sorted({j.cell.budget for j in jobs if j.cell.dataset == name and pairs is not None}):
            check_pairs(budget, pairs, name)
    for files in hub_files(protocol, config.archs):
        problem = hub_problem(files)
        if problem:
            raise MddError(problem)


def hub_files(protocol: Protocol, archs: str) -> list[HubFiles]:
    """What the grid's encoders would fetch from the hub, source encoders first.

    Random text weights (`[text] weights = "random"`, being added beside `[image] pretrained = "none"`)
    build every text encoder offline from its architecture, so none of them is asked for.
    """
    grid = arch_grid(protocol, archs)
    images = dict.fromkeys([protocol.image.source, *(i for i, _ in grid)])
    found = [image_files(name, protocol.image.pretrained) for name in images]
    if getattr(protocol.text, "weights", "pretrained") != "random":
        found += [text_files(name) for name in dict.fromkeys([protocol.text.source, *(t for _, t in grid)])]
    return [f for f in found if f is not None]
