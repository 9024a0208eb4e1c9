"""`mdd-bench eval`: evaluate one distilled set, random pairs or the full-data upper bound."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from mdd_bench.cli.options import (
    data_root_option,
    device_option,
    protocol_option,
)
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol


def _metrics_table(rows: list[tuple[str, str, dict, dict]]) -> str:
    from mdd_bench.evaluation.metrics import METRICS

    cols = [*METRICS, "mean"]

    def cell(m: float, s: float | None) -> str:
        return f"{m:.1f}" if s is None else f"{m:.1f} ± {s:.1f}"

    body = [[img, txt, *[cell(mean[c], std[c]) for c in cols]] for img, txt, mean, std in rows]
    return tabulate(body, headers=["image", "text", *cols])


@click.command("eval")
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
    # The set is read before any data is generated or loaded, so a bad file fails at once.
    distilled = DistilledSet.load(path) if path is not None else None
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
    assert distilled is not None
    result = evaluator.evaluate(distilled, archs, track, repetitions, seed)
    used = ", ".join(result.extras_used) or "none"
    click.echo(f"track: {track}  extras used: {used}  protocol: {proto.name}  test split")
    rows = [
        (a.image_encoder + ("*" if a.source else ""), a.text_encoder, a.mean, a.std) for a in result.archs
    ]
    click.echo(_metrics_table(rows))
