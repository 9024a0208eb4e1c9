"""What every verb shares: one-line errors instead of tracebacks, the common options, list parsing."""

from __future__ import annotations

from pathlib import Path

import click

from mdd_bench.errors import MddError


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


tuned_option = click.option(
    "--tuned",
    default="packaged",
    show_default=True,
    help="Tuned values (`mdd-bench tune`): packaged (the protocol's own file), none (untuned defaults), "
    "or a tuned.toml path.",
)


data_root_option = click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the dataset (images + annotations). Default: $MDD_BENCH_DATA/<dataset>.",
)


def _silence_libraries() -> None:
    """`--quiet`: the libraries' own bars and notices too (transformers' weight loading)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


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
