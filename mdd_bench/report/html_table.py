"""One `Table` as an HTML <table>: the same cells, marks and bolding as Markdown and LaTeX, plus what the
page's script needs: a sortable last header row (a lower-is-better column, HLR, sorts smallest first),
one <tbody> per row group (sorting stays within a budget block), each number's value for sorting, and
the indices of its result files for provenance.
"""

from __future__ import annotations

import math
from html import escape
from itertools import groupby

from mdd_bench.report.layout import MISSING, Cell, Table


def _header(table: Table) -> str:
    """Nested headers, equal neighbours merged per level; the last level's cells are the sort handles."""
    depth = len(table.columns[0])
    rows = []
    for level in range(depth - 1):
        cells = []
        for prefix, run in groupby(table.columns, key=lambda c: c[: level + 1]):
            span = len(list(run))
            text = escape(prefix[-1])
            cells.append(f'<th colspan="{span}">{text}</th>' if span > 1 else f"<th>{text}</th>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    last = []
    for i, col in enumerate(table.columns):
        kind = "label" if i < table.labels else "num"
        hint, better = "sort: largest first, then smallest, then as printed", ""
        if kind == "label":
            hint = "sort: A to Z, then Z to A, then as printed"
        elif i in table.lower_better:  # the best first: smallest
            hint, better = (
                "sort: smallest (best) first, then largest, then as printed",
                ' data-better="lower"',
            )
        last.append(f'<th class="{kind}" data-col="{i}"{better} title="{hint}">{escape(col[-1])}</th>')
    rows.append("<tr>" + "".join(last) + "</tr>")
    return "<thead>" + "".join(rows) + "</thead>"


def _number(cell: Cell) -> str:
    text = escape(cell.number())
    if cell.spread() is not None:
        text += f'<span class="pm"> ± {escape(cell.spread() or "")}</span>'
    if cell.bold:
        text = f"<strong>{text}</strong>"
    if cell.marks:
        text += f'<span class="mark">{escape(cell.marks)}</span>'
    if cell.change_text() is not None:
        text += f'<span class="change"> ({cell.arrow()}{escape(cell.change_text() or "")})</span>'
    return text


def _value_cell(cell: Cell, where: str, source_ids: dict[str, int]) -> str:
    if cell.missing:
        return f'<td class="num missing">{MISSING}</td>'
    ids = " ".join(str(source_ids[f]) for f in cell.sources if f in source_ids)
    # A text ("2/3", "untuned") sorts by its number when it has one, else last, like a missing number.
    sortable = cell.text is None or (cell.mean is not None and not math.isnan(cell.mean))
    attrs = f' data-v="{float(cell.mean or 0.0)!r}"' if sortable else ""
    if ids:
        n = len(cell.sources)
        attrs += (
            f' data-src="{ids}" data-where="{escape(where)}" tabindex="0"'
            f' title="{n} result file{"s" if n != 1 else ""}: click for protocol, seeds, versions"'
        )
    shown = escape(cell.plain()) if cell.text is not None else _number(cell)
    return f'<td class="num"{attrs}>{shown}</td>'


def table_html(table: Table, source_ids: dict[str, int]) -> str:
    """The <table>; `source_ids` maps a result file (relative to the runs folder) to its provenance index."""
    starts = sorted({0, *table.group_starts, len(table.rows)})
    bodies = []
    carried = [""] * table.labels
    index = 0
    for begin, end in zip(starts, starts[1:], strict=False):
        rows = []
        for row in table.rows[begin:end]:
            cells = []
            for i in range(table.labels):
                own = row[i].plain() if row[i].text else ""
                if own:
                    carried[i] = own
                    carried[i + 1 :] = [""] * (table.labels - i - 1)
                # A blank label repeats the one above (as printed); shown muted, so a sorted row keeps it.
                text, cls = (own, "label") if own else (carried[i], "label carried")
                cells.append(f'<td class="{cls}">{escape(text)}</td>')
            labels = " · ".join(c for c in carried if c)
            for i in range(table.labels, len(row)):
                where = f"{table.title} · {labels} · {' '.join(h for h in table.columns[i] if h)}"
                cells.append(_value_cell(row[i], where, source_ids))
            rows.append(f'<tr data-i="{index}">' + "".join(cells) + "</tr>")
            index += 1
        bodies.append("<tbody>" + "".join(rows) + "</tbody>")
    return (
        f'<table class="results" id="t-{escape(table.name)}">' + _header(table) + "".join(bodies) + "</table>"
    )


def table_section(table: Table, source_ids: dict[str, int]) -> str:
    """The table with its caption and notes, as the other formats print them."""
    notes = "".join(f"<li>{escape(n)}</li>" for n in table.notes)
    return (
        f'<div class="scroll">{table_html(table, source_ids)}</div>'
        f'<p class="caption">{escape(table.caption)}</p>'
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
    )
