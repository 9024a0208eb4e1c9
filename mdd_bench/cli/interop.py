"""`mdd-bench import` and `mdd-bench export`: reference sets in, HF and LoRS out."""

from __future__ import annotations

from pathlib import Path

import click

from mdd_bench.cli.options import (
    protocol_option,
)
from mdd_bench.protocol import load_protocol


@click.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--from", "source", type=click.Choice(["lors", "mtt-vl", "mdm"]), required=True,
              help="Which reference wrote the file.")  # fmt: skip
@protocol_option
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Writes OUT.safetensors + OUT.json (what `mdd-bench eval OUT` reads).")  # fmt: skip
def import_cmd(path: Path, source: str, protocol: str, out: Path) -> None:
    """Import a reference's distilled set (a .pt, read with weights_only=True) to evaluate it here."""
    import shlex

    from mdd_bench.interop import import_set

    proto = load_protocol(protocol)
    distilled = import_set(path, source, proto)
    saved = distilled.save(out)
    shape = "x".join(map(str, distilled.images.shape[1:]))
    click.echo(
        f"imported {distilled.size} pairs from {source}: images {shape}, texts {distilled.texts.shape[1]}-d, "
        f"extras: {', '.join(sorted(distilled.extras)) or 'none'}"
    )
    for note in distilled.provenance["imported"]["notes"]:
        click.echo(f"  {note}")
    click.echo(f"saved {saved} (+ .json)")
    command = f"mdd-bench eval {shlex.quote(str(out))} --protocol {shlex.quote(protocol)}"
    click.echo(f"\nevaluate it under the fair protocol:\n  {command}")
    native = distilled.provenance.get("eval_loss", "infonce") != "infonce"
    if distilled.extras or native or distilled.provenance.get("eval_dsa") is not None:
        click.echo(f"  {command} --track native    # with its own extras")


@click.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["hf", "lors"]), required=True,
              help="hf: a datasets folder (load_from_disk, push_to_hub); lors: LoRS's .pt.")  # fmt: skip
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="hf: the folder to write; lors: the .pt file (a folder: OUT/distilled.pt).")  # fmt: skip
@protocol_option
def export_cmd(path: Path, fmt: str, out: Path, protocol: str) -> None:
    """Export the distilled set at PATH for the Hugging Face hub or the reference's own evaluation."""
    from mdd_bench.distilled import DistilledSet
    from mdd_bench.interop import export_set

    distilled = DistilledSet.load(path)
    written, notes = export_set(distilled, fmt, out, load_protocol(protocol))
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {distilled.size} pairs as {fmt} to {written}")
    if fmt == "hf":
        click.echo(f"read it with datasets.load_from_disk('{written}'); publish with .push_to_hub(REPO)")
    else:
        click.echo(f"the reference evaluates it with: python evaluate_only.py --ckpt_path {written} ...")
