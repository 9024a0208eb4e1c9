"""The `mdd-bench` command: one small function per verb."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from tabulate import tabulate

from mdd_bench import __version__
from mdd_bench.errors import MddError
from mdd_bench.protocol import list_protocols, load_protocol


class Group(click.Group):
    """Turns MddError into click's one-line `Error: ...` and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MddError as exc:
            raise click.ClickException(str(exc)) from None


protocol_option = click.option(
    "--protocol",
    default="cpu",
    show_default=True,
    help="Packaged protocol name (smoke, cpu, paper) or path of a TOML file.",
)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where every training loop runs: cpu, cuda, cuda:N, or auto (the first GPU if any).",
)
data_root_option = click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the dataset (images + annotations). Default: $MDD_BENCH_DATA/<dataset>.",
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mdd-bench")
def cli() -> None:
    """mdd-bench: multimodal dataset distillation, benchmarked under identical budgets."""


@cli.group(cls=Group, name="list")
def list_group() -> None:
    """Show what exists: protocols, datasets, encoders."""


@list_group.command("protocols")
def list_protocols_cmd() -> None:
    rows = []
    for name in list_protocols():
        p = load_protocol(name)
        rows.append([name, p.data.dataset, p.image.source, p.text.source, p.eval.towers, p.description])
    headers = ["protocol", "dataset", "image", "text", "evaluation trains", "description"]
    click.echo(tabulate(rows, headers=headers))


@list_group.command("datasets")
def list_datasets_cmd() -> None:
    from mdd_bench.data import list_datasets

    click.echo(tabulate(list(list_datasets().items()), headers=["dataset", "description"]))


@list_group.command("methods")
def list_methods_cmd() -> None:
    from mdd_bench.registry import list_methods

    rows = []
    for name, cls in list_methods().items():
        missing = cls.missing_artifacts()
        status = "available" if not missing else f"needs unknown artifact {', '.join(missing)}"
        rows.append([name, cls.family, ", ".join(cls.artifacts) or "-", status, cls.__module__])
    click.echo(tabulate(rows, headers=["method", "family", "artifacts", "status", "module"]))


@list_group.command("encoders")
def list_encoders_cmd() -> None:
    from mdd_bench.models import list_image_encoders, list_text_encoders

    click.echo("image: " + ", ".join(list_image_encoders()))
    click.echo("text:  " + ", ".join(list_text_encoders()))


@cli.group(cls=Group)
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


@cli.group("experts", cls=Group, invoke_without_command=True)
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
    from mdd_bench.interop.buffers import buffer_files, import_experts
    from mdd_bench.workspace import Workspace

    group = ctx.parent.params if ctx.parent is not None else {}
    protocol = protocol or group.get("protocol") or "cpu"
    dataset = dataset or group.get("dataset")
    data_root = data_root or group.get("data_root")
    buffer_files(directory)  # a wrong folder fails before any data is loaded
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


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MddError(f"{option} takes comma-separated integers, got '{text}'.") from None
    if not values or (option == "--budgets" and any(v <= 0 for v in values)):
        raise MddError(f"{option} needs positive integers, got '{text}'.")
    if option == "--seeds" and any(v < 0 for v in values):
        raise MddError(f"--seeds needs non-negative integers, got '{text}'.")
    return values


def _run_config(proto, names: list[str], datasets: str | None, budgets: str | None, seeds: str | None,
                archs: str, tracks: str, out: Path, overrides: dict, data_root: Path | None,
                repetitions: int | None, device: str):  # fmt: skip
    """The grid options shared by `run` and `ablate`, with the protocol's defaults filled in."""
    from mdd_bench.run.config import RunConfig

    return RunConfig(
        methods=names,
        datasets=[d.strip() for d in (datasets or proto.data.dataset).split(",") if d.strip()],
        budgets=_int_list(budgets, "--budgets") if budgets else [proto.budgets[0]],
        seeds=_int_list(seeds, "--seeds") if seeds else list(proto.seeds),
        archs=archs,
        tracks=[t.strip() for t in tracks.split(",") if t.strip()],
        out=out,
        overrides=overrides,
        data_root=data_root,
        repetitions=repetitions,
        device=device,
    )


def executor_options(command):
    """Where and how the cells run, and how much they say: shared by `run` and `ablate`."""
    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: cells in turn, in-process; ray: a Ray task per cell and artifact."),
        click.option("--address", default=None, help="Ray cluster to join (e.g. auto, ray://host:10001)."),
        click.option("--cpus-per-task", type=click.FloatRange(min=1), default=None,
                     help="CPUs and torch threads per task (ray default 1; local: torch's)."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="GPUs per Ray task (fractions share a GPU)."),
        click.option("--ray-cpus", type=click.IntRange(min=1), default=None,
                     help="CPUs of the local Ray started without --address (default: all)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars and no per-cell chatter."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _executor_config(config, executor: str, address: str | None, cpus_per_task: float | None,
                     gpus_per_task: float, ray_cpus: int | None) -> None:  # fmt: skip
    if executor == "local":
        resolve_device_now(config.device)
    if address and executor != "ray":
        raise MddError("--address names a Ray cluster: add --executor ray.")
    config.executor, config.address = executor, address
    config.cpus_per_task, config.gpus_per_task, config.ray_cpus = cpus_per_task, gpus_per_task, ray_cpus


@cli.command("run")
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
    repetitions: int | None,
    full_data_repetitions: int | None,
    data_root: Path | None,
    device: str,
    executor: str,
    address: str | None,
    cpus_per_task: float | None,
    gpus_per_task: float,
    ray_cpus: int | None,
    dry_run: bool,
    quiet: bool,
    write_report_: bool,
    report_dir: Path | None,
    random_baseline: bool,
    redistill: bool,
) -> None:
    """Distil and evaluate every cell (method x dataset x budget x seed); finished cells are skipped."""
    import time

    from mdd_bench.registry import list_methods, parse_method_names
    from mdd_bench.run.config import parse_overrides

    started = time.perf_counter()

    proto = load_protocol(protocol)
    available = {n: cls for n, cls in list_methods().items() if not cls.missing_artifacts()}
    if methods and methods.strip() != "all":
        names = parse_method_names(methods)
        for name in names:
            missing = list_methods()[name].missing_artifacts()
            if missing:
                raise MddError(
                    f"Method '{name}' needs {', '.join(missing)}, which this version cannot build."
                )
    elif methods:
        names = list(available)
    else:
        names = [n for n, cls in available.items() if cls.family == "coreset"] or list(available)
    config = _run_config(
        proto,
        names,
        datasets,
        budgets,
        seeds,
        archs,
        tracks,
        out,
        parse_overrides(sets),
        data_root,
        repetitions,
        device,
    )
    _executor_config(config, executor, address, cpus_per_task, gpus_per_task, ray_cpus)
    config.full_data_repetitions = full_data_repetitions
    config.random_baseline = random_baseline
    if redistill and archs != "all":
        raise MddError("--redistill-missing-sets only acts with --archs all (a cell re-run to reach every "
                       "encoder pair); add --archs all or drop the flag.")  # fmt: skip
    config.redistill = redistill
    unknown_sets = set(config.overrides) - set(names)
    if unknown_sets:
        raise MddError(f"--set names method '{sorted(unknown_sets)[0]}', which is not in --methods.")
    if dry_run:
        from mdd_bench.run.dryrun import describe_plan

        click.echo(describe_plan(proto, config))
        return
    _run_and_report(proto, config, quiet, (report_dir or out / "report") if write_report_ else None, started)


def resolve_device_now(device: str) -> None:
    """The device must exist here (local executor); with Ray each worker resolves its own."""
    from mdd_bench.workspace import resolve_device

    resolve_device(device)


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
    message = run.failure_message()
    if message:
        raise MddError(message)


def _silence_libraries() -> None:
    """`--quiet`: the libraries' own bars and notices too (transformers' weight loading)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


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


@cli.command("ablate")
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
    repetitions: int | None,
    data_root: Path | None,
    device: str,
    executor: str,
    address: str | None,
    cpus_per_task: float | None,
    gpus_per_task: float,
    ray_cpus: int | None,
    quiet: bool,
) -> None:
    """Run a method's declared ablation groups as result cells; `mdd-bench report` tabulates them.

    Each variant is a cell like those of `mdd-bench run`: resumed when finished, run under its lock,
    recorded as failed (error file, traceback in its log) without stopping the others.
    """
    from mdd_bench.registry import parse_method_names
    from mdd_bench.run.ablations import run_ablations
    from mdd_bench.run.config import parse_overrides

    proto = load_protocol(protocol)
    (name,) = parse_method_names(method)
    overrides = parse_overrides(sets)
    if set(overrides) - {name}:
        raise MddError(f"--set names method '{sorted(set(overrides) - {name})[0]}', not '{name}'.")
    config = _run_config(
        proto, [name], datasets, budgets, seeds, archs, tracks, out, overrides, data_root, repetitions, device
    )
    _executor_config(config, executor, address, cpus_per_task, gpus_per_task, ray_cpus)
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
    message = run.failure_message()
    if message:
        raise MddError(message)


def _metrics_table(rows: list[tuple[str, str, dict, dict]]) -> str:
    from mdd_bench.evaluation.metrics import METRICS

    cols = [*METRICS, "mean"]

    def cell(m: float, s: float | None) -> str:
        return f"{m:.1f}" if s is None else f"{m:.1f} ± {s:.1f}"

    body = [[img, txt, *[cell(mean[c], std[c]) for c in cols]] for img, txt, mean, std in rows]
    return tabulate(body, headers=["image", "text", *cols])


@cli.command("eval")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@protocol_option
@click.option("--dataset", default=None, help="Dataset (default: the protocol's).")
@data_root_option
@click.option("--archs", type=click.Choice(["source", "all"]), default="source", show_default=True)
@click.option("--track", type=click.Choice(["hard", "native"]), default="hard", show_default=True)
@click.option("--repetitions", type=click.IntRange(min=1), default=None, help="Default: the protocol's.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--full-data", is_flag=True, help="Run (or show) the full-data upper bound.")
@device_option
@click.option(
    "--random", "random_budget", type=click.IntRange(min=1), default=None, help="Evaluate N random pairs."
)
def eval_cmd(
    path: Path | None,
    protocol: str,
    dataset: str | None,
    data_root: Path | None,
    archs: str,
    track: str,
    repetitions: int | None,
    seed: int,
    full_data: bool,
    device: str,
    random_budget: int | None,
) -> None:
    """Train fresh retrieval models on the distilled set at PATH and report test retrieval."""
    from mdd_bench.artifacts.references import full_data_reference
    from mdd_bench.data import load_dataset
    from mdd_bench.distilled import DistilledSet
    from mdd_bench.evaluation.evaluator import Evaluator, random_pairs
    from mdd_bench.workspace import Workspace, resolve_device

    if sum([path is not None, full_data, random_budget is not None]) != 1:
        raise MddError("Give exactly one of: a distilled-set PATH, --full-data, or --random N.")
    if path is not None:
        DistilledSet.check_path(path)  # before any data is generated or loaded
    resolve_device(device)
    proto = load_protocol(protocol)
    proto = proto.with_dataset(dataset) if dataset else proto
    ds = load_dataset(proto.data.dataset, proto, data_root)
    workspace = Workspace(proto, ds, device)
    evaluator = Evaluator(workspace)
    if full_data:
        encoders = [proto.image.source] + (list(proto.image.unseen) if archs == "all" else [])
        rows = []
        for encoder in encoders:
            r = full_data_reference(workspace, image_encoder=encoder, repetitions=repetitions).result
            click.echo(f"full-data {encoder}: {r['pairs']} pairs, {len(r['runs'])} repetitions")
            rows.append((r["image_encoder"], r["text_encoder"], r["mean"], r["std"]))
        click.echo(_metrics_table(rows))
        return
    if random_budget is not None:
        distilled = random_pairs(ds, evaluator.text_embeddings("train"), proto, random_budget, seed)
    else:
        distilled = DistilledSet.load(path)
    result = evaluator.evaluate(distilled, archs, track, repetitions, seed)
    used = ", ".join(result.extras_used) or "none"
    click.echo(f"track: {track}  extras used: {used}  protocol: {proto.name}  test split")
    rows = [
        (a.image_encoder + ("*" if a.source else ""), a.text_encoder, a.mean, a.std) for a in result.archs
    ]
    click.echo(_metrics_table(rows))


@cli.command("import")
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
    if distilled.extras or distilled.provenance.get("eval_loss", "infonce") != "infonce":
        click.echo(f"  {command} --track native    # with its own extras")


@cli.command("export")
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


def _float_list(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MddError(f"{option} takes comma-separated numbers, got '{text}'.") from None
    if not values or any(v <= 0 for v in values):
        raise MddError(f"{option} needs positive numbers, got '{text}'.")
    return values


def _bool_list(text: str, option: str) -> tuple[bool, ...]:
    words = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not words or any(w not in ("true", "false") for w in words):
        raise MddError(f"{option} takes a comma-separated list of true/false, got '{text}'.")
    return tuple(w == "true" for w in words)


@cli.command("tune-eval")
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
        budgets=tuple(_int_list(budgets, "--budgets")) if budgets else None,
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


@cli.command("report")
@click.option(
    "--runs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder of result files written by `mdd-bench run`.",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"), show_default=True
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
def report_cmd(
    runs: Path, out: Path, formats: str, track: str, baseline: str | None, interval: str, gallery: bool
) -> None:
    """Tables (LaTeX, Markdown, CSV), figures and an HTML page from the result files under --runs."""
    from mdd_bench.report import parse_formats, write_report

    paths = write_report(
        runs, out, parse_formats(formats), track, baseline, log=click.echo, interval=interval, gallery=gallery
    )
    for path in paths:
        click.echo(f"wrote {path}")


def main() -> None:
    cli(prog_name="mdd-bench")


if __name__ == "__main__":
    sys.exit(main())
