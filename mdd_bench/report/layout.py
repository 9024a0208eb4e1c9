"""A table as data (cells that know their number, spread, marks and bolding), so LaTeX and Markdown
render the same content and tests can check values without parsing either format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MISSING = "–"

# Marks a cell or a method label may carry; each table lists the notes for the marks it uses.
SOURCE = "*"
EXTRAS = "†"
FEWER_SEEDS = "‡"
TIED = "≈"  # tied for best: the best is not outside the runner-up's 95% interval
DETERMINISTIC = "§"  # a deterministic method: one distillation seed, spread over evaluation repetitions
STILL_RISING = "↗"  # a method's val curve was still rising at the maximum iterations in some seed


@dataclass(frozen=True)
class Cell:
    """A label (text) or a number; a number of None or NaN is a missing cell, shown as MISSING. A text in
    a number column ("2/3", "untuned") is shown as it is; its `mean`, if any, is what the page sorts by."""

    text: str | None = None
    mean: float | None = None
    std: float | None = None
    digits: int = 1
    bold: bool = False
    marks: str = ""
    change: float | None = None  # relative change against the baseline, e.g. -0.93
    thousands: bool = False
    signed: bool = False  # a difference: "+1.2" / "-1.2"
    ci: float | None = None  # half-width of the 95% interval of the mean (decides bolding)
    # Result files behind the number (paths relative to the runs folder): the HTML page links them.
    sources: tuple[str, ...] = ()

    @property
    def missing(self) -> bool:
        return self.text is None and (self.mean is None or math.isnan(self.mean))

    def number(self) -> str:
        """The mean as shown (the value that bolding compares)."""
        assert self.mean is not None
        spec = ("+" if self.signed else "") + ("," if self.thousands else "") + f".{self.digits}f"
        text = f"{self.mean:{spec}}"
        # A difference that rounds to zero (IOR of random against itself) reads 0, not -0 or +0.
        return text.lstrip("+-") if not text.strip("+-0.,") else text

    def spread(self) -> str | None:
        if self.std is None or math.isnan(self.std):
            return None
        return f"{self.std:.{self.digits}f}"

    def change_text(self) -> str | None:
        """The change against the baseline, no arrow: "93%", or "2.5×" from twice the baseline up."""
        if self.change is None or math.isnan(self.change):
            return None
        ratio = 1.0 + self.change
        if ratio >= 2:
            return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:.0f}×"
        return f"{abs(self.change) * 100:.0f}%"

    def arrow(self) -> str:
        return "↓" if (self.change or 0.0) < 0 else "↑"

    def plain(self) -> str:
        """Unicode text, used by Markdown and for tests."""
        if self.text is not None:
            return self.text + self.marks
        if self.missing:
            return MISSING
        out = self.number()
        if self.spread() is not None:
            out += f" ± {self.spread()}"
        out += self.marks
        if self.change_text() is not None:
            out += f" ({self.arrow()}{self.change_text()})"
        return out


@dataclass
class Table:
    """`columns` holds one header tuple per column (outermost level first, all the same length);
    `labels` is how many leading columns are row labels. A row that starts a group gets a rule above it.
    `lower_better` holds the indices of the columns where the smallest number is the best (bolding and
    the HTML page's first sort follow it).
    """

    name: str
    title: str
    caption: str
    columns: list[tuple[str, ...]]
    labels: int
    rows: list[list[Cell]] = field(default_factory=list)
    lower_better: set[int] = field(default_factory=set)
    group_starts: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def add_row(self, cells: list[Cell], new_group: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row of {len(cells)} cells for {len(self.columns)} columns in {self.name}")
        if new_group and self.rows:
            self.group_starts.add(len(self.rows))
        self.rows.append(cells)

    def column(self, *header: str) -> int:
        """Index of the column whose header ends with `header` (tests and renderers find columns by name)."""
        hits = [i for i, c in enumerate(self.columns) if c[len(c) - len(header) :] == header]
        if len(hits) != 1:
            raise KeyError(f"{header} matches {len(hits)} columns of {self.name}")
        return hits[0]

    def find_row(self, *labels: str) -> list[Cell]:
        """The row whose label cells read `labels` (a blank label repeats the one above, as printed)."""
        current: list[str] = [""] * self.labels
        for row in self.rows:
            for i in range(self.labels):
                text = row[i].text or ""
                if text:
                    current[i] = text
                    current[i + 1 :] = [""] * (self.labels - i - 1)
            shown = [c.rstrip(SOURCE + EXTRAS + FEWER_SEEDS + DETERMINISTIC + STILL_RISING) for c in current]
            if tuple(shown[: len(labels)]) == labels:
                return row
        raise KeyError(f"no row {labels} in {self.name}")
