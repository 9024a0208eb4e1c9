"""The committed reference results are what the committed result files give: `mdd-bench report` on
`reports/cpu/runs` rewrites every committed table byte for byte, and README's first screen and the docs'
results page are their copy.

Text outputs (Markdown, LaTeX, CSV) are compared byte for byte. Figures (PNG, PDF) and the HTML page that
embeds them are byte-identical only under the same matplotlib and font versions, so here they must exist
and be regenerated, not match.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bench_scripts import load_bench

from mdd_bench.report import write_report

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the scripts import each other (grid_time, findings_numbers)
REPORTS = REPO / "reports"
TEXT = {".md", ".tex", ".csv"}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("reports")
    return out, write_report(REPORTS / "cpu" / "runs", out, gallery=False)


def test_committed_reports_regenerate_from_committed_runs(regenerated: tuple[Path, list[Path]]) -> None:
    out, paths = regenerated
    assert paths
    stale = []
    for path in paths:
        committed = REPORTS / path.relative_to(out)
        assert committed.exists(), f"{committed} is not committed: run mdd-bench report (see README)"
        if path.suffix in TEXT and path.read_bytes() != committed.read_bytes():
            stale.append(str(committed.relative_to(REPO)))
    assert not stale, f"stale against reports/cpu/runs, regenerate them (README): {stale}"


def test_readme_first_screen_is_the_committed_summary() -> None:
    """README's block is the retrieval table at a glance; docs/results.md's is everything (both tracks,
    the cost, the grid's time, the one-run benchmarks): each equals what the script regenerates."""
    module = load_bench("readme_summary")
    readme = (REPO / "README.md").read_text()
    page = (REPO / "docs" / "results.md").read_text()
    assert module.updated(readme, REPORTS / "cpu") == readme, "run python benchmarks/readme_summary.py"
    assert module.updated_results(page, REPORTS / "cpu") == page, "run python benchmarks/readme_summary.py"
    assert "### Retrieval at a glance" in readme and "docs/results.md" in readme
    assert "### Time per iteration, one run" not in readme, "README's block stays compact"
    for heading in (
        "### Retrieval at a glance",
        "### Distillation cost at a glance",
        "**Grid time so far:**",
        "### Time per iteration, one run",
        "### Evaluation and runner cost, one run each",
    ):
        assert heading in page, heading


def test_findings_block_is_the_committed_results() -> None:
    import findings

    text = (REPORTS / "FINDINGS.md").read_text()
    bench = REPORTS / "cpu" / "bench_trajectory.txt"
    assert findings.updated(text, REPORTS / "cpu" / "runs", bench) == text, (
        "run python benchmarks/findings.py"
    )
