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


@data.command("generate")
@click.argument("dataset", type=click.Choice(["flickr8k", "flickr30k", "coco"]))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write."
)
@click.option(
    "--images",
    type=click.IntRange(min=3),
    default=80,
    show_default=True,
    help="Images in all, split in the real set's proportions (5 captions each).",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=8),
    default=224,
    show_default=True,
    help="Side of the square images in pixels.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def data_generate(dataset: str, out: Path, images: int, resolution: int, seed: int) -> None:
    """Write a generated stand-in for DATASET as a Karpathy folder (images + dataset_<name>.json).

    Shapes scenes and captions, not the real pictures: for proving the paper's path and timing its
    networks offline (`--protocol paper-offline --data-root OUT`), never for results.
    """
    from mdd_bench.data.generated_karpathy import write_karpathy

    made = write_karpathy(out, dataset, images, resolution, seed)
    sizes = ", ".join(f"{split} {n}" for split, n in made.splits.items())
    restval = f" ({made.restval} of train as restval)" if made.restval else ""
    click.echo(f"wrote a generated {dataset} at {out}: {sizes} images{restval}, {resolution}x{resolution}")
    click.echo(f"read it with --dataset {dataset} --data-root {out}")


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
