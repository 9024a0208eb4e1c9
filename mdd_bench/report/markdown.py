"""Markdown rendering: one `report_<track>.md` per protocol with every table (caption and notes under it)
and the figures, for reading results on GitHub or in an editor without compiling LaTeX.
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from mdd_bench.report.layout import Cell, Table


def _escape(text: str) -> str:
    return text.replace("|", r"\|").replace("*", r"\*")


def cell(c: Cell) -> str:
    text = _escape(c.plain())
    return f"**{text}**" if c.bold and not c.missing else text


def table_md(table: Table) -> str:
    """A pipe table (tabulate); nested headers are joined into one line (outermost first)."""
    head = [_escape(" ".join(h for h in col if h)) for col in table.columns]
    align = ["left" if i < table.labels else "right" for i in range(len(head))]
    rows = [[cell(c) for c in row] for row in table.rows]
    return tabulate(rows, headers=head, tablefmt="pipe", colalign=align, disable_numparse=True)


def section(table: Table) -> str:
    parts = [f"## {table.title}", "", table_md(table), "", _escape(table.caption)]
    if table.notes:
        parts += ["", *[_escape(n) + "  " for n in table.notes]]
    return "\n".join(parts) + "\n"


def write_markdown(path: Path, title: str, tables: list[Table], figures: list[tuple[Path, str]]) -> Path:
    """The whole report of one protocol and track; figures are linked by their PNG next to the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]
    parts += [section(t) for t in tables]
    for fig, caption in figures:
        if fig.suffix == ".png":
            parts += [f"## {caption}", "", f"![{caption}]({fig.name})", ""]
    path.write_text("\n".join(parts))
    return path
