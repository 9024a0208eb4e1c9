"""`mdd-bench experts`: train the expert trajectories, or import a reference's buffers."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from mdd_bench.cli.options import (
    Group,
    data_root_option,
    device_option,
    protocol_option,
)
from mdd_bench.protocol import load_protocol


@click.group("experts", cls=Group, invoke_without_command=True)
@protocol_option
@click.option("--dataset", default=None, help="Dataset (default: the protocol's).")
@data_root_option
@click.option("--num-experts", type=click.IntRange(min=1), default=None, help="Default: the protocol's.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default: the protocol's.")
@click.option("--towers", type=click.Choice(["backbone+text-head", "frozen-backbone+heads"]),
              default="backbone+text-head", show_default=True,
              help="What the experts train: the image encoder and text head (MTT-VL, TESLA, LoRS, MDM), "
                   "or an image head and the text head on the frozen encoder (RepBlend).")  # fmt: skip
@device_option
@click.pass_context
def experts_cmd(
    ctx: click.Context,
    protocol: str,
    dataset: str | None,
    data_root: Path | None,
    num_experts: int | None,
    epochs: int | None,
    towers: str,
    device: str,
) -> None:
    """Train (or resume) the expert trajectories that MTT-VL, TESLA, LoRS, MDM (and, with
    --towers frozen-backbone+heads, RepBlend) use.

    `mdd-bench experts import DIR --from lors` stores the references' expert buffers instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from mdd_bench.artifacts.experts import ensure_experts
    from mdd_bench.data import load_dataset
    from mdd_bench.workspace import Workspace, resolve_device

    resolve_device(device)
    proto = load_protocol(protocol)
    proto = proto.with_dataset(dataset) if dataset else proto
    ds = load_dataset(proto.data.dataset, proto, data_root)
    store = ensure_experts(Workspace(proto, ds, device), num_experts, epochs, towers=towers)
    m = store.manifest
    click.echo(
        f"{store.num_experts} experts x epochs {m['kept_epochs']} kept (dropped {m['dropped_epochs']})"
    )
    rows = [
        [i, *[f"{v:.1f}" for k, v in e.items() if k.startswith("val_mean")]] for i, e in m["experts"].items()
    ]
    click.echo(tabulate(rows, headers=["expert", "val mean (epoch 0)", "val mean (last epoch)"]))
    click.echo(f"stored in {store.folder} ({store.disk_bytes / 2**20:.1f} MiB)")


@experts_cmd.command("import")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--from", "source", type=click.Choice(["lors", "mtt-vl"]), required=True,
              help="Whose buffer.py wrote the img_/txt_replay_buffer_N.pt files.")  # fmt: skip
@click.option("--protocol", default=None,
              help="As for `experts` (default: the one given before `import`, else cpu).")  # fmt: skip
@click.option(
    "--dataset", default=None, help="Dataset the experts were trained on (default: the protocol's)."
)
@data_root_option
@click.option("--replace", is_flag=True, help="Overwrite experts the protocol's store already holds.")
@click.pass_context
def experts_import_cmd(
    ctx: click.Context,
    directory: Path,
    source: str,
    protocol: str | None,
    dataset: str | None,
    data_root: Path | None,
    replace: bool,
) -> None:
    """Store a reference's expert buffers in DIRECTORY as the protocol's experts (checked per tensor).

    Options given before `import` (`mdd-bench experts --protocol paper import DIR`) count too.
    """
    from mdd_bench.data import load_dataset
    from mdd_bench.interop.buffers import check_buffer_files, import_experts
    from mdd_bench.workspace import Workspace

    group = ctx.parent.params if ctx.parent is not None else {}
    protocol = protocol or group.get("protocol") or "cpu"
    dataset = dataset or group.get("dataset")
    data_root = data_root or group.get("data_root")
    check_buffer_files(directory)  # a wrong folder or file fails before any data is loaded
    proto = load_protocol(protocol)
    proto = proto.with_dataset(dataset) if dataset else proto
    ds = load_dataset(proto.data.dataset, proto, data_root)
    done = import_experts(directory, source, Workspace(proto, ds, "cpu"), replace)
    click.echo(
        f"imported {len(done.experts)} {source} experts (epochs {done.kept_epochs[0]}.."
        f"{done.kept_epochs[-1]} of {done.snapshots_in_files} snapshots) into {done.folder}"
    )
    for note in done.notes:
        click.echo(f"note: {note}")
    click.echo(f"methods of protocol '{proto.name}' on {proto.data.dataset} now use them (mdd-bench run ...)")
