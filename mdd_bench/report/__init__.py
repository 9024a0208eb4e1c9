"""`mdd-bench report`: the paper's tables and figures from the result files of `mdd-bench run`.

Layout written under `out`: `results.csv` (every number, long format, all protocols) and, per protocol,
`<protocol>/`: one LaTeX fragment per table plus the wrapper `report_<track>.tex`, `report_<track>.md`,
`summary.md` (both tracks' mean recall and the cost in two narrow tables, README's first screen),
the figures as PNG and PDF, a gallery PNG per distilled set still on disk (`gallery/`), and
`report.html`, one self-contained page with every track's tables, the figures and the galleries. Results
made with random weights are reported apart and marked on every caption, title and page
(`random_weights.py`). When the
results hold a protocol and its variant (cpu and cpu-frozen: one lineage, `lineage.py`), each of their
folders also gets the protocols side by side: the `protocols_<track>` table in every format, and its
numbers as `protocols_<track>.csv`.

The same result files give the same bytes (the committed `reports/` regenerate exactly): no timestamps
(PDF CreationDate is dropped), every order is the results' or a sort, floats in CSV are rounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from mdd_bench.errors import MddError, unknown
from mdd_bench.record import FULL_DATA
from mdd_bench.report.figures import write_figures
from mdd_bench.report.frame import TIMING_TRACK, load_frame
from mdd_bench.report.gallery import collect_galleries, write_gallery_png
from mdd_bench.report.html import write_html
from mdd_bench.report.latex import write_latex
from mdd_bench.report.lineage import lineages
from mdd_bench.report.markdown import write_markdown
from mdd_bench.report.random_weights import NOTE as RANDOM_WEIGHTS_NOTE
from mdd_bench.report.random_weights import is_random
from mdd_bench.report.summary import write_summary
from mdd_bench.report.tables import build_tables, protocol_comparison

FORMATS = ("latex", "markdown", "csv", "figures", "html")
# Six decimals in CSVs: the metrics are exact fractions of the test split; the digits beyond are float
# noise, which another machine's or library's summation order could change.
CSV_DIGITS = 6

__all__ = ["FORMATS", "parse_formats", "write_report"]


def parse_formats(text: str) -> list[str]:
    """`latex,markdown` -> ["latex", "markdown"]; an unknown name is a one-line error."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not names:
        raise MddError(f"--format needs at least one of: {', '.join(FORMATS)}.")
    for name in names:
        if name not in FORMATS:
            raise unknown("format", name, FORMATS)
    return list(dict.fromkeys(names))


def write_report(
    runs: Path,
    out: Path,
    formats: Iterable[str] = FORMATS,
    track: str = "hard",
    baseline: str | None = None,
    log: Callable[[str], None] = lambda _: None,
    interval: str = "std",
    gallery: bool = True,
    before: Path | None = None,
) -> list[Path]:
    """Load every result under `runs` and write the requested formats under `out`; returns the paths.

    `gallery=False` leaves the distilled sets out (the galleries), so the output depends on the result
    files alone: what a fresh checkout of committed runs (JSON only) regenerates byte for byte. `before`:
    another folder of results (e.g. the grid before tuning) each protocol's before -> after table reads.
    """
    runs, out, formats = Path(runs), Path(out), set(formats)
    frame = load_frame(runs)
    earlier = load_before(before, runs, frame) if before is not None else None
    tracks = sorted(set(frame["track"]) - {TIMING_TRACK})
    if track not in tracks:
        there = ", ".join(tracks) or "none"
        raise MddError(
            f"No '{track}' track results under '{runs}' (tracks there: {there}). Pick one with --track."
        )
    methods = set(frame["method"]) - {FULL_DATA}
    if baseline is not None and baseline not in methods:
        raise unknown("--baseline method", baseline, methods)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "csv" in formats:
        csv = out / "results.csv"
        rounded = frame.round({"value": CSV_DIGITS, "rep_std": CSV_DIGITS})
        # A column of its own only then: the CSV of real results keeps its bytes.
        rounded = rounded.assign(random_weights=True) if is_random(frame) else rounded
        rounded.to_csv(csv, index=False)
        paths.append(csv)
    lineages_of = lineages(frame)
    for protocol in dict.fromkeys(frame["protocol"]):
        part = frame[frame["protocol"] == protocol]
        if track not in set(part["track"]):
            log(f"skip protocol {protocol}: it has no '{track}' track results")
            continue
        folder = out / protocol
        title = f"mdd-bench report: protocol {protocol}, {track} track"
        title = f"{title}. {RANDOM_WEIGHTS_NOTE}" if is_random(frame) else title
        lineage = lineages_of.get(protocol)
        previous = None
        if earlier is not None:
            previous = earlier[earlier["protocol"] == protocol]
            if previous.empty:
                log(f"note --before {before} has no results of protocol {protocol}: no before -> after table")
                previous = None
        tables = build_tables(part, track, baseline, interval, lineage, previous)
        if lineage is not None and "csv" in formats:
            compared = protocol_comparison(lineage.frame, lineage.protocols, track)
            if compared is not None:
                folder.mkdir(parents=True, exist_ok=True)
                paths.append(folder / f"protocols_{track}.csv")
                compared.round(CSV_DIGITS).to_csv(paths[-1], index=False)
        figures = write_figures(part, track, folder) if "figures" in formats else []
        if "latex" in formats:
            paths += write_latex(tables, folder, f"report_{track}", title, figures)
        if "markdown" in formats:
            paths.append(write_markdown(folder / f"report_{track}.md", title, tables, figures))
            summary = write_summary(folder / "summary.md", part, interval)
            paths += [summary] if summary else []
        paths += [p for p, _ in figures]
        drawn = gallery and formats & {"figures", "html"}
        galleries = collect_galleries(runs, part["file"], log) if drawn else []
        pngs = (
            {g.key: write_gallery_png(g, folder / "gallery") for g in galleries}
            if "figures" in formats
            else {}
        )
        paths += pngs.values()
        if "html" in formats:
            written = {track: figures} if figures else {}
            page = folder / "report.html"
            paths.append(
                write_html(
                    page, part, runs, track, baseline, interval, written, galleries, pngs, lineage, previous
                )
            )
    return paths


def load_before(before: Path, runs: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The --before results, refused when they are not comparable: none there, the report's own folder, or
    random-weight results beside real ones (a difference between them would read as a result)."""
    if not Path(before).is_dir():
        raise MddError(f"--before folder '{before}' does not exist. Pass a folder of result files.")
    if Path(before).resolve() == Path(runs).resolve():
        raise MddError(
            f"--before '{before}' is the --runs folder itself. Pass the folder of the earlier run."
        )
    earlier = load_frame(before)
    if earlier.empty:
        raise MddError(
            f"--before folder '{before}' holds no result files. Pass the folder of the earlier run."
        )
    if is_random(earlier) != is_random(frame):
        raise MddError(
            f"--before folder '{before}' and the results mix random-weight and real results; compare like "
            "with like."
        )
    return earlier
