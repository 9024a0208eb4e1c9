"""`mdd-bench data`: prepare and check datasets."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from mdd_bench.cli.options import (
    Group,
    data_root_option,
    protocol_option,
)
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol


@click.group(cls=Group)
def data() -> None:
    """Prepare and check datasets."""


@data.command("prepare")
@click.argument("name")
@protocol_option
@data_root_option
def data_prepare(name: str, protocol: str, data_root: Path | None) -> None:
    """Generate (shapes), cache the images and embed every caption of dataset NAME."""
    from mdd_bench.pretrained.prepare import prepare

    proto = load_protocol(protocol).with_dataset(name)
    report = prepare(name, proto, data_root)
    summary = report.dataset.summary()
    rows = [[s, summary[s]["images"], summary[s]["captions"]] for s in report.dataset.splits]
    click.echo(tabulate(rows, headers=["split", "images", "captions"]))
    click.echo(f"data: {summary['root']}  resolution: {proto.data.resolution}")
    for stage, secs in report.seconds.items():
        click.echo(f"  {stage:<24} {secs:7.1f} s")
    click.echo(f"prepared {name} in {report.total_seconds:.1f} s")


@data.command("check")
@click.option("--dataset", "name", required=True, help="Dataset name (see `mdd-bench list datasets`).")
@protocol_option
@data_root_option
def data_check(name: str, protocol: str, data_root: Path | None) -> None:
    """Validate a dataset folder: layout, counts and every image file."""
    from mdd_bench.data import load_dataset
    from mdd_bench.data.check import check_dataset

    proto = load_protocol(protocol).with_dataset(name)
    dataset = load_dataset(name, proto, data_root, decode=False)
    report = check_dataset(dataset)
    rows = []
    for split in dataset.splits:
        s = report[split]
        rows.append([split, s["images"], s["captions"], "-".join(map(str, s["captions_per_image"]))])
    click.echo(f"{name} ({dataset.layout} layout) at {dataset.root}")
    click.echo(tabulate(rows, headers=["split", "images", "captions", "captions/image"]))
    problems = report["problems"]
    if problems:
        for problem in problems[:20]:
            click.echo(f"  problem: {problem}", err=True)
        more = " (first 20 shown)" if len(problems) > 20 else ""
        raise MddError(f"{len(problems)} problem(s) found in {name}{more}. Fix or remove those files.")
    click.echo("ok: every annotation entry and image is readable")
