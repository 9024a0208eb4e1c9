"""`mdd-bench list`: protocols, datasets, methods, encoders."""

from __future__ import annotations

import click
from tabulate import tabulate

from mdd_bench.cli.options import (
    Group,
)
from mdd_bench.protocol import list_protocols, load_protocol


@click.group(cls=Group, name="list")
def list_group() -> None:
    """Show what exists: protocols, datasets, methods, encoders."""


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
