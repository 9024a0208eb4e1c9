"""`mdd-bench report`: tables, figures and the HTML page from result files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.option(
    "--runs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder of result files written by `mdd-bench run`.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the report goes (default: RUNS/report, beside the results it reads; the committed "
    "reference reports are regenerated with --runs reports/cpu/runs --out reports).",
)
@click.option(
    "--format",
    "formats",
    default="latex,markdown,csv,figures,html",
    show_default=True,
    help="Comma-separated: latex, markdown, csv, figures (with a gallery PNG per distilled set), html.",
)
@click.option("--track", type=click.Choice(["hard", "native"]), default="hard", show_default=True)
@click.option("--baseline", default=None, help="Method the timing table's savings are measured against.")
@click.option(
    "--interval",
    type=click.Choice(["std", "ci95"]),
    default="std",
    show_default=True,
    help="What ± shows: the std over seeds, or the 95% interval of the mean.",
)
@click.option("--gallery/--no-gallery", default=True, show_default=True,
              help="Draw the distilled sets on disk (off: the report reads result files only).")  # fmt: skip
@click.option(
    "--before",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of earlier results of the same protocols (e.g. the grid before tuning): adds a before -> "
    "after table per track.",
)
def report_cmd(
    runs: Path,
    out: Path | None,
    formats: str,
    track: str,
    baseline: str | None,
    interval: str,
    gallery: bool,
    before: Path | None,
) -> None:
    """Tables (LaTeX, Markdown, CSV), figures and an HTML page from the result files under --runs."""
    from mdd_bench.report import parse_formats, write_report

    out = out if out is not None else runs / "report"
    paths = write_report(
        runs,
        out,
        parse_formats(formats),
        track,
        baseline,
        log=click.echo,
        interval=interval,
        gallery=gallery,
        before=before,
    )
    for path in paths:
        click.echo(f"wrote {path}")
