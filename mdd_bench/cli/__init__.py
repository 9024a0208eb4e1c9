"""The `mdd-bench` command: the group here, one small module per verb group beside it.

The verbs only parse their options and print; what they run lives in the packages (a `RunConfig` owns
the validation of a grid's options, `report.write_report` the report, and so on).
"""

from __future__ import annotations

import click

from mdd_bench import __version__
from mdd_bench.cli.data import data
from mdd_bench.cli.evaluate import eval_cmd
from mdd_bench.cli.experts import experts_cmd
from mdd_bench.cli.interop import export_cmd, import_cmd
from mdd_bench.cli.listing import list_group
from mdd_bench.cli.options import Group
from mdd_bench.cli.report import report_cmd
from mdd_bench.cli.run import ablate_cmd, run_cmd
from mdd_bench.cli.tune import tune_cmd
from mdd_bench.cli.tune_eval import tune_eval_cmd


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mdd-bench")
def cli() -> None:
    """mdd-bench: multimodal dataset distillation, benchmarked under identical budgets."""


for command in (
    list_group, data, experts_cmd, run_cmd, ablate_cmd, eval_cmd, import_cmd, export_cmd, tune_cmd,
    tune_eval_cmd, report_cmd,
):  # fmt: skip
    cli.add_command(command)


def main() -> None:
    cli(prog_name="mdd-bench")
