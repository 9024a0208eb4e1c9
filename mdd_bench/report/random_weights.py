"""Results made with random weights are cost and plumbing only, and every report of them says so.

A protocol run with randomly initialised encoders (`[image] pretrained = "none"`, `[text] weights =
"random"`: `paper-offline`) measures time, memory and the path through the code; its recalls are those of
random networks. Its result files carry `random_weights: true` (`ResultRecord.random_weights`), and the
report of them states it in every table caption, figure caption and title, and at the top of the HTML
page. A report never holds both kinds: `load_frame` refuses a folder that mixes them, so no table can put
a random-weight number beside a real one.

The flag travels on the frame as `frame.attrs["random_weights"]` (pandas keeps it through the filters the
report applies), not as a column, so the results CSV of real runs keeps its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mdd_bench.errors import MddError
from mdd_bench.report.layout import Table

NOTE = "Random weights: cost and plumbing only, not a result."
ATTR = "random_weights"


def is_random(frame: pd.DataFrame) -> bool:
    """The frame holds results made with random weights (all of them: a mix never loads)."""
    return bool(frame.attrs.get(ATTR, False))


def check_not_mixed(flags: dict[Path, bool], runs: Path) -> bool:
    """True when every result under `runs` was made with random weights, False when none was; a mix is a
    one-line error naming one file of each kind."""
    random = [p for p, flag in flags.items() if flag]
    real = [p for p, flag in flags.items() if not flag]
    if random and real:
        raise MddError(
            f"'{runs}' mixes results made with random weights ('{random[0]}', cost and plumbing only) "
            f"with real ones ('{real[0]}'). Report them from separate folders."
        )
    return bool(random)


def mark(text: str) -> str:
    """`text` with the note in front."""
    return f"{NOTE} {text}".strip()


def mark_tables(tables: Iterable[Table], frame: pd.DataFrame) -> list[Table]:
    """The tables, each caption starting with the note when `frame` holds random-weight results."""
    tables = list(tables)
    if is_random(frame):
        for table in tables:
            table.caption = mark(table.caption)
    return tables
