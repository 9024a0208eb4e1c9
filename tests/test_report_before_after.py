"""`mdd-bench report --before DIR` (issue 34: "a table before tuning -> after per method and budget"): each
method's mean recall in an earlier folder and in this one, the change with the Welch 95% interval over
seeds (checked against scipy), missing where one side did not run, and the refusals."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats
from test_report_initial import result, write

from mdd_bench.cli import cli
from mdd_bench.report import write_report
from mdd_bench.report.frame import load_frame
from mdd_bench.report.tables import before_after_table

BEFORE = {("lors", 100): [20.0, 23.0, 21.0], ("mdm", 100): [30.0, 31.5], ("tesla", 200): [15.0, 14.0]}
AFTER = {("lors", 100): [25.0, 26.5, 24.0, 25.5], ("mdm", 100): [29.0, 30.0, 31.0], ("mtt-vl", 100): [22.0]}


def folder(root: Path, cells: dict[tuple[str, int], list[float]]) -> Path:
    for (method, budget), finals in cells.items():
        for seed, final in enumerate(finals):
            write(root, result(method, "flickr8k", budget, seed, final, None))
    return root


@pytest.fixture
def grids(tmp_path: Path) -> tuple[Path, Path]:
    return folder(tmp_path / "before", BEFORE), folder(tmp_path / "after", AFTER)


def welch_half(after: list[float], before: list[float]) -> float:
    """The same rule computed with scipy: t at the floor of the Welch degrees of freedom times the s.e."""
    va, vb = np.var(after, ddof=1) / len(after), np.var(before, ddof=1) / len(before)
    dof = (va + vb) ** 2 / (va**2 / (len(after) - 1) + vb**2 / (len(before) - 1))
    return float(stats.t.ppf(0.975, math.floor(dof)) * math.sqrt(va + vb))


def test_known_numbers_give_the_known_change_and_interval(grids: tuple[Path, Path]) -> None:
    before, after = (load_frame(g) for g in grids)
    table = before_after_table(before, after, "hard")
    assert table is not None and table.name == "before_after_hard"
    old, new, change = (table.column("Flickr8k", h) for h in ("Before", "After", "Change"))
    for method, name in (("lors", "LoRS"), ("mdm", "MDM")):
        a, b = AFTER[(method, 100)], BEFORE[(method, 100)]
        row = table.find_row("100", name)
        assert row[old].mean == pytest.approx(np.mean(b)) and row[new].mean == pytest.approx(np.mean(a))
        assert row[change].mean == pytest.approx(np.mean(a) - np.mean(b)) and row[change].signed
        assert row[change].std == pytest.approx(welch_half(a, b), rel=1e-3)  # the t-table's digits
        exact = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert row[change].std >= (exact.high - exact.low) / 2 - 1e-9  # never narrower than the exact one
    # one side only: shown there, no change; one seed after: no interval
    assert table.find_row("200", "TESLA-WBCE")[change].missing
    assert table.find_row("200", "TESLA-WBCE")[old].mean == pytest.approx(14.5)
    assert table.find_row("100", "MTT-VL")[change].missing


def test_a_grid_against_a_copy_of_itself_changes_by_zero(grids: tuple[Path, Path], tmp_path: Path) -> None:
    copy = shutil.copytree(grids[1], tmp_path / "copy")
    table = before_after_table(load_frame(copy), load_frame(grids[1]), "hard")
    cell = table.find_row("100", "LoRS")[table.column("Flickr8k", "Change")]
    assert cell.mean == 0.0 and cell.number() == "0.0"


def test_the_report_writes_it_and_the_cli_refuses_bad_folders(
    grids: tuple[Path, Path], tmp_path: Path
) -> None:
    before, after = grids
    paths = write_report(after, tmp_path / "out", {"markdown", "html"}, before=before, gallery=False)
    text = next(p for p in paths if p.name == "report_hard.md").read_text()
    assert "Before -> after" in text
    page = next(p for p in paths if p.suffix == ".html").read_text()
    assert "Before -&gt; after" in page or "Before -> after" in page
    plain = write_report(after, tmp_path / "plain", {"markdown"}, gallery=False)
    assert "Before -> after" not in next(p for p in plain if p.name == "report_hard.md").read_text()
    for bad, says in ((after, "is the --runs folder itself"), (tmp_path / "nope", "does not exist")):
        out = CliRunner().invoke(
            cli, ["report", "--runs", str(after), "--before", str(bad), "--format", "markdown"]
        )
        assert out.exit_code != 0 and says in out.output and "Traceback" not in out.output


def test_random_weight_results_are_not_compared_with_real_ones(
    grids: tuple[Path, Path], tmp_path: Path
) -> None:
    before, after = grids
    for path in before.rglob("*.json"):
        path.write_text(path.read_text().replace('"schema": 1,', '"schema": 1, "random_weights": true,'))
    out = CliRunner().invoke(
        cli, ["report", "--runs", str(after), "--before", str(before), "--format", "markdown"]
    )
    assert out.exit_code != 0 and "mix random-weight and real results" in out.output


def test_constant_seeds_and_single_seeds(tmp_path: Path) -> None:
    """Degenerate input: equal seeds on both sides change by 0 ± 0 (no spread, nothing to widen it); one
    seed on a side gives a change without an interval, never a made-up one."""
    same = {("lors", 100): [20.0, 20.0, 20.0], ("mdm", 100): [25.0]}
    before = load_frame(folder(tmp_path / "b", same))
    after = load_frame(folder(tmp_path / "a", {("lors", 100): [20.0, 20.0], ("mdm", 100): [27.0, 26.0]}))
    table = before_after_table(before, after, "hard")
    change = table.column("Flickr8k", "Change")
    lors, mdm = table.find_row("100", "LoRS")[change], table.find_row("100", "MDM")[change]
    assert (lors.mean, lors.std) == (0.0, 0.0)
    assert mdm.mean == pytest.approx(1.5) and math.isnan(mdm.std)
