"""`mdd-bench run` and `mdd-bench ablate`: parse the options into a `RunConfig`, run, print the summary."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from mdd_bench.cli.options import (
    _silence_libraries,
    data_root_option,
    device_option,
    protocol_option,
    tuned_option,
)
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol


def executor_options(command):
    """Where and how the cells run, and how much they say: shared by `run` and `ablate`."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: cells in turn, in-process; ray: a Ray task per cell and artifact."),
        click.option("--address", default=None,
                     help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001; default: RAY_ADDRESS, "
                          "else a new local Ray)."),
        click.option("--cpus-per-task", type=click.FloatRange(min=1), default=None,
                     help="CPUs and torch threads per task (ray default 1; local: torch's)."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="GPUs per Ray task (fractions share a GPU)."),
        click.option("--ray-cpus", type=click.IntRange(min=1), default=None,
                     help="CPUs of the local Ray started without --address (default: all)."),
        click.option("--drain-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Once this file exists, start no new cell: the running ones finish, then the "
                          "run ends (before a planned stop, so no cell's work is lost; rerun to go on)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars and no per-cell chatter."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.command("run")
@click.option(
    "--methods",
    default=None,
    help="Comma-separated method names, or 'all' (default: the coreset baselines, the first run).",
)
@click.option(
    "--dataset", "datasets", default=None, help="Comma-separated datasets (default: the protocol's)."
)
@protocol_option
@click.option("--budgets", default=None, help="Comma-separated pair budgets (default: the protocol's first).")
@click.option(
    "--seeds",
    default=None,
    help="Comma-separated distillation seeds (default: the protocol's; deterministic methods run the first).",
)
@click.option("--archs", type=click.Choice(["source", "all"]), default="source", show_default=True)
@click.option("--tracks", default="hard,native", show_default=True)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True
)
@click.option(
    "--set", "sets", multiple=True, help="Hyper-parameter override METHOD.PARAM=VALUE (repeatable)."
)
@tuned_option
@click.option(
    "--repetitions",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluation repetitions (default: the protocol's).",
)
@click.option(
    "--full-data-repetitions",
    type=click.IntRange(min=1),
    default=None,
    help="Train the full-data upper bound to N repetitions (default: only the one the methods need).",
)
@data_root_option
@device_option
@executor_options
@click.option("--dry-run", is_flag=True, help="Show the cells, the artifacts and the work; build nothing.")
@click.option("--report/--no-report", "write_report_", default=True, show_default=True,
              help="Write the Markdown report and the CSV of every result at the end.")  # fmt: skip
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the report goes (default: OUT/report).")  # fmt: skip
@click.option("--random-baseline/--no-random-baseline", "random_baseline", default=True, show_default=True,
              help="Add random cells (same budgets and seeds) and a native random baseline per cell with "
                   "extras: what improvement over random (IOR) and the score subtract.")  # fmt: skip
@click.option("--redistill-missing-sets", "redistill", is_flag=True,
              help="With --archs all: re-run whole a finished cell whose saved set is gone (sets "
                   "are not committed) instead of failing; its result is replaced once the new one "
                   "is written.")  # fmt: skip
def run_cmd(
    methods: str | None,
    datasets: str | None,
    protocol: str,
    budgets: str | None,
    seeds: str | None,
    archs: str,
    tracks: str,
    out: Path,
    sets: tuple[str, ...],
    tuned: str,
    repetitions: int | None,
    full_data_repetitions: int | None,
    data_root: Path | None,
    device: str,
    executor: str,
    address: str | None,
    cpus_per_task: float | None,
    gpus_per_task: float,
    ray_cpus: int | None,
    drain_file: Path | None,
    dry_run: bool,
    quiet: bool,
    write_report_: bool,
    report_dir: Path | None,
    random_baseline: bool,
    redistill: bool,
) -> None:
    """Distil and evaluate every cell (method x dataset x budget x seed); finished cells are skipped."""
    import time

    from mdd_bench.run.config import RunConfig, resolve_methods

    started = time.perf_counter()
    proto = load_protocol(protocol)
    config = RunConfig.from_options(
        proto, resolve_methods(methods), datasets, budgets, seeds, tracks, sets,
        archs=archs, out=out, data_root=data_root, repetitions=repetitions, device=device,
        executor=executor, address=address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
        ray_cpus=ray_cpus, full_data_repetitions=full_data_repetitions, random_baseline=random_baseline,
        redistill=redistill, tuned=tuned, drain_file=drain_file,
    )  # fmt: skip
    if dry_run:
        from mdd_bench.run.dryrun import describe_plan

        click.echo(describe_plan(proto, config))
        return
    _run_and_report(proto, config, quiet, (report_dir or out / "report") if write_report_ else None, started)


def _run_and_report(proto, config, quiet: bool, report_dir: Path | None, started: float) -> None:
    """Run the grid, print the summary, the timing per stage and where everything is; exit non-zero
    naming the failed cells when any failed."""
    import time

    from mdd_bench.run.grid import execute_grid, summary_rows
    from mdd_bench.run.progress import breakdown_rows

    chatter = (lambda _: None) if quiet else click.echo
    if quiet:
        _silence_libraries()
    run = execute_grid(proto, config, log=chatter, progress=not quiet)
    if run.results:
        headers = ["method", "dataset", "budget", "seed", *[f"{t} mean" for t in config.tracks], "distill s"]
        click.echo(
            f"\nprotocol {proto.name}; mean recall on test (source architectures), mean ± std over "
            "repetitions"
            + (" (random weights: cost and plumbing only, not a result)" if proto.random_weights else "")
        )
        click.echo(tabulate(summary_rows(run.results, config.tracks), headers=headers))
    report_paths: list[Path] = []
    if report_dir is not None and run.results:
        from mdd_bench.report import write_report

        start = time.perf_counter()
        try:
            report_paths = write_report(config.out, report_dir, ["markdown", "csv"], config.tracks[0])
        except Exception as exc:  # the results stand; the report can be rebuilt with `mdd-bench report`
            click.echo(f"no report: {exc}")
        run.stages["report"] = time.perf_counter() - start
    ran = sum(o.status == "done" and not o.job.extend for o in run.outcomes)
    extended = sum(o.status == "done" and bool(o.job.extend) for o in run.outcomes)
    summed = " (seconds summed over parallel tasks)" if run.parallel else ""
    also = f", {extended} extended with encoder pairs" if extended else ""
    click.echo(f"\ntime by stage, {ran} cell(s) run here{also}{summed}:")
    rows = breakdown_rows(run.stages, time.perf_counter() - started, other=not run.parallel)
    click.echo(tabulate(rows, headers=["stage", "seconds", "share"]))
    finished = f"{len(run.results)} of {len(run.jobs)} cells of this grid finished"
    click.echo(f"\nresults: {config.out} ({finished})")
    for path in report_paths:
        if path.suffix == ".md":
            click.echo(f"report:  {path}")
    if report_paths:
        click.echo(
            f"tables:  {report_dir / 'results.csv'}; LaTeX and figures: mdd-bench report --runs {config.out}"
        )
    _note_full_data(proto, config)
    if run.busy:
        names = ", ".join(o.job.short for o in run.busy)
        click.echo(
            f"note: {len(run.busy)} cell(s) were running in another process ({names}); rerun to collect them"
        )
    _note_drained(run)
    message = run.failure_message()
    if message:
        raise MddError(message)


def _note_drained(run) -> None:
    if run.drained:
        names = ", ".join(o.job.short for o in run.drained[:8]) + (" ..." if len(run.drained) > 8 else "")
        click.echo(f"note: {len(run.drained)} cell(s) not started, the drain file exists ({names}); "
                   "remove it and rerun the same command for them")  # fmt: skip


def _note_full_data(proto, config) -> None:
    """Say when the published full-data row has fewer repetitions than the protocol's, and how to add them."""
    import json

    wanted = proto.eval.full_data_repetitions
    for dataset in config.datasets:
        for path in sorted((config.out / proto.name / dataset / "full-data").glob("b*-s*.json")):
            try:
                runs = len(json.loads(path.read_text())["evaluation"]["hard"]["archs"][0]["runs"])
            except (OSError, ValueError, KeyError, IndexError):
                continue
            if runs < wanted:
                click.echo(
                    f"full-data upper bound ({dataset}): {runs} repetition(s), as the report says; the "
                    f"protocol asks {wanted}: add --full-data-repetitions {wanted} (only the rest train)"
                )


@click.command("ablate")
@click.argument("method")
@protocol_option
@click.option(
    "--dataset", "datasets", default=None, help="Comma-separated datasets (default: the protocol's)."
)
@click.option(
    "--budget",
    "--budgets",
    "budgets",
    default=None,
    help="Comma-separated budgets (default: the protocol's first).",
)
@click.option("--seeds", default=None, help="Comma-separated distillation seeds (default: the protocol's).")
@click.option(
    "--groups", default=None, help="Comma-separated ablation groups (default: all the method declares)."
)
@click.option("--archs", type=click.Choice(["source", "all"]), default="source", show_default=True)
@click.option("--tracks", default="hard", show_default=True)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True
)
@click.option(
    "--set", "sets", multiple=True, help="Override METHOD.PARAM=VALUE for every variant (repeatable)."
)
@tuned_option
@click.option("--repetitions", type=click.IntRange(min=1), default=None, help="Default: the protocol's.")
@data_root_option
@device_option
@executor_options
def ablate_cmd(
    method: str,
    protocol: str,
    datasets: str | None,
    budgets: str | None,
    seeds: str | None,
    groups: str | None,
    archs: str,
    tracks: str,
    out: Path,
    sets: tuple[str, ...],
    tuned: str,
    repetitions: int | None,
    data_root: Path | None,
    device: str,
    executor: str,
    address: str | None,
    cpus_per_task: float | None,
    gpus_per_task: float,
    ray_cpus: int | None,
    drain_file: Path | None,
    quiet: bool,
) -> None:
    """Run a method's declared ablation groups as result cells; `mdd-bench report` tabulates them.

    Each variant is a cell like those of `mdd-bench run`: resumed when finished, run under its lock,
    recorded as failed (error file, traceback in its log) without stopping the others.
    """
    from mdd_bench.registry import parse_method_names
    from mdd_bench.run.ablations import run_ablations
    from mdd_bench.run.config import RunConfig

    proto = load_protocol(protocol)
    (name,) = parse_method_names(method)
    config = RunConfig.from_options(
        proto, [name], datasets, budgets, seeds, tracks, sets,
        archs=archs, out=out, data_root=data_root, repetitions=repetitions, device=device,
        executor=executor, address=address, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task,
        ray_cpus=ray_cpus, tuned=tuned, drain_file=drain_file,
    )  # fmt: skip
    chosen = [g.strip() for g in groups.split(",") if g.strip()] if groups else None
    if quiet:
        _silence_libraries()
    chatter = (lambda _: None) if quiet else click.echo
    run = run_ablations(proto, config, chosen, log=chatter, progress=not quiet)
    rows = []
    for r in run.results:
        ev = r["evaluation"][config.tracks[0]]
        src = next(a for a in ev["archs"] if a["source"])
        rows.append([r["ablation"]["group"], r["ablation"]["variant"], r["budget"], r["seed"],
                     f"{src['mean']['mean']:.1f}"])  # fmt: skip
    click.echo(tabulate(rows, headers=["group", "variant", "budget", "seed", "mean recall (test)"]))
    click.echo(f"{len(run.results)} variant results; in {out}. Tables: mdd-bench report --runs {out}")
    _note_drained(run)
    message = run.failure_message()
    if message:
        raise MddError(message)
