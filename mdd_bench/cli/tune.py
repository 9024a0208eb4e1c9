"""`mdd-bench tune`: the same seeded TPE trials, pruned on the val curve, for every method and budget."""

from __future__ import annotations

from pathlib import Path

import click

from mdd_bench.cli.options import data_root_option, device_option, protocol_option
from mdd_bench.protocol import load_protocol
from mdd_bench.run.config import int_list


@click.command("tune")
@click.option("--methods", required=True, help="Comma-separated method names, or all.")
@protocol_option
@click.option("--dataset", default=None, help="Dataset (default: the protocol's).")
@data_root_option
@click.option("--budgets", default=None, help="Comma-separated budgets (default: the protocol's).")
@click.option("--trials", type=click.IntRange(min=0), default=None,
              help="Must equal the protocol's [tuning] trials (the same for all); default: it.")  # fmt: skip
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None,
              help="Ray cluster to join (default: RAY_ADDRESS, else a new local Ray).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Trials run at once under --executor ray.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/tuning"),
              show_default=True, help="Studies (journals), summary.json and tuned.toml go here.")  # fmt: skip
@device_option
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--drain-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Once this file exists, start no new trial: let the running ones finish, then stop "
                   "(before a planned stop, so no trial's work is lost).")  # fmt: skip
@click.option("--status", is_flag=True,
              help="Run no trial: summarise OUT's studies (rewrite summary.json, tuned.toml).")  # fmt: skip
def tune_cmd(
    methods: str,
    protocol: str,
    dataset: str | None,
    data_root: Path | None,
    budgets: str | None,
    trials: int | None,
    executor: str,
    address: str | None,
    workers: int,
    out: Path,
    device: str,
    progress: bool,
    drain_file: Path | None,
    status: bool,
) -> None:
    """Tune methods' hyper-parameters on val with equal trials; resumable (rerun the same command).

    Each (method, budget) is an Optuna study in OUT/studies (journal storage: a killed run resumes without
    repeating a finished trial). Studies with all their trials write their best values to OUT/tuned.toml,
    which `mdd-bench run --tuned OUT/tuned.toml` applies (the packaged protocols' own files apply by
    default).
    """
    from mdd_bench.registry import list_methods, parse_method_names
    from mdd_bench.tuning.tune import TuneConfig, tune
    from mdd_bench.workspace import resolve_device

    resolve_device(device)
    proto = load_protocol(protocol)
    if dataset:
        proto = proto.with_dataset(dataset)
    names = list(list_methods()) if methods.strip() == "all" else parse_method_names(methods)
    config = TuneConfig(
        methods=names,
        budgets=int_list(budgets, "--budgets") if budgets else list(proto.budgets),
        out=out,
        trials=trials,
        executor=executor,
        address=address,
        workers=workers,
        data_root=data_root,
        device=device,
        progress=progress,
        drain_file=drain_file,
    )
    report = tune(proto, config, log=click.echo, run_trials=not status)
    from tabulate import tabulate

    rows = [
        [s.name, s.trials, s.pruned, s.failed, f"{s.cpu_hours:.3f}", s.best_val, s.best_trial, s.best_params]
        for s in report.summaries
    ]
    headers = ["study", "trials", "pruned", "failed", "CPU h", "best val", "trial", "values"]
    click.echo(tabulate(rows, headers=headers))
    click.echo(f"summary: {report.summary_path}")
    click.echo(f"tuned:   {report.tuned_path}")
