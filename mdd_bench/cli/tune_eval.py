"""`mdd-bench tune-eval`: choose each encoder pair's evaluation recipe on val."""

from __future__ import annotations

from pathlib import Path

import click

from mdd_bench.cli.options import (
    _bool_list,
    _float_list,
    data_root_option,
    device_option,
    protocol_option,
)
from mdd_bench.protocol import load_protocol
from mdd_bench.run.config import int_list


@click.command("tune-eval")
@protocol_option
@click.option("--dataset", default=None, help="Dataset (default: the protocol's).")
@data_root_option
@click.option("--lrs-img", default="0.1,0.03,0.01,0.003", show_default=True)
@click.option("--lrs-txt", default="0.1,0.01", show_default=True)
@click.option("--dsa", "dsa_values", default="false,true", show_default=True, help="DSA settings to try.")
@click.option("--archs", type=click.Choice(["source", "all"]), default="all", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--stability-seeds", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--budgets", default=None, help="Comma-separated budgets (default: the protocol's).")
@click.option(
    "--full-data/--no-full-data",
    "full_choice",
    default=True,
    show_default=True,
    help="Also choose each image encoder's full-data lr and real-image augmentation on val.",
)
@click.option("--full-lrs-img", default="0.1,0.03,0.01,0.003", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the scores and choices as JSON here.")  # fmt: skip
@device_option
def tune_eval_cmd(
    protocol: str,
    dataset: str | None,
    data_root: Path | None,
    lrs_img: str,
    lrs_txt: str,
    dsa_values: str,
    archs: str,
    seeds: int,
    top: int,
    stability_seeds: int,
    budgets: str | None,
    full_choice: bool,
    full_lrs_img: str,
    out: Path | None,
    device: str,
) -> None:
    """Choose each encoder pair's evaluation recipe on val (random real pairs, no method involved)."""
    import time

    from mdd_bench.cache import atomic_write_json
    from mdd_bench.data import load_dataset
    from mdd_bench.tuning.recipes import TuneConfig, Tuner, choices_json, recipes_toml

    config = TuneConfig(
        lrs_img=_float_list(lrs_img, "--lrs-img"),
        lrs_txt=_float_list(lrs_txt, "--lrs-txt"),
        dsa=_bool_list(dsa_values, "--dsa"),
        archs=archs,
        seeds=seeds,
        top=top,
        stability_seeds=stability_seeds,
        budgets=tuple(int_list(budgets, "--budgets")) if budgets else None,
        full_lrs_img=_float_list(full_lrs_img, "--full-lrs-img"),
    )
    from mdd_bench.workspace import resolve_device

    resolve_device(device)
    proto = load_protocol(protocol)
    proto = proto.with_dataset(dataset) if dataset else proto
    ds = load_dataset(proto.data.dataset, proto, data_root)
    start = time.perf_counter()
    tuner = Tuner(proto, ds, config, log=click.echo, device=device)
    choices = tuner.run()
    full = tuner.full_data_choice() if full_choice else None
    augment = None
    if full:
        source_lrs = full[proto.image.source]
        augment = tuner.real_augment_choice(float(max(source_lrs, key=source_lrs.get)))
    seconds = time.perf_counter() - start
    command = f"mdd-bench tune-eval --protocol {protocol}"
    click.echo(f"\ntuned in {seconds:.0f} s; paste into the protocol file's [eval] section:\n")
    click.echo(recipes_toml(choices, command, augment, full, proto.text.source))
    if out is not None:
        atomic_write_json(out, choices_json(choices, config, seconds, augment, full))
        click.echo(f"scores written to {out}")
