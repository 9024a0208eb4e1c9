"""Copy the committed reference results into README's first screen and the docs' results page, so
neither can drift from the committed result files.

Both files hold a block between `<!-- results:begin -->` and `<!-- results:end -->`:

- README.md: the compact table only, the first section of `reports/cpu/summary.md` ("Retrieval at a
  glance": both tracks' mean recall per budget, with its caption and footnotes), its "Tuning" section when
  the grid ran tuned, and a line pointing to the docs' results page.
- docs/results.md: everything, `reports/cpu/summary.md` (written by `mdd-bench report`), how long the
  committed grid took (`grid_time.py`), the per-iteration timing of `benchmarks/bench_trajectory.py`
  (`reports/cpu/bench_trajectory.txt`, one run on one machine, with its command), then evaluation time
  per repetition and the runner's overhead per cell (`bench_eval.txt`, `bench_runner.txt`).

A test checks both committed files against this output.

    python benchmarks/readme_summary.py            # rewrite README.md and docs/results.md in place
    python benchmarks/readme_summary.py --check    # exit 1 when either is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grid_time import grid_time, sentence

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DOCS_LINK = (
    "Distillation cost, the time the grid took, time per iteration and evaluation cost: "
    "[docs/results.md](docs/results.md); every table (each recall, IOR/HLR, unseen encoders, ablations): "
    "`reports/cpu/report_hard.md`."
)


def trajectory_timing(path: Path) -> str:
    """The benchmark's command line (its first line) and its per-iteration table (from "Per iteration")."""
    lines = path.read_text().splitlines()
    command = lines[0].lstrip("# ").strip()
    start = next(i for i, line in enumerate(lines) if line.startswith("Per iteration"))
    body = "\n".join(lines[start:]).strip()
    return f"### Time per iteration, one run\n\n`{command}`\n\n```\n{body}\n```\n"


def evaluation_and_runner(reports: Path) -> str:
    """Each `bench_eval.py` run's command and its one-line results, then the runner's overhead per cell."""
    lines = []
    for line in (reports / "bench_eval.txt").read_text().splitlines():
        if line.startswith("# "):
            lines.append(f"\n`{line[2:].strip()}`\n")
        elif ": one repetition" in line:
            lines.append(f"- {line}")
    runner = (reports / "bench_runner.txt").read_text().splitlines()
    stats = json.loads(runner[1])
    lines.append(f"\n`{runner[0][2:].strip()}`\n")
    share = 100 * stats["overhead_fraction"]
    lines.append(
        f"- the runner's own overhead (everything but distillation and evaluation): "
        f"{stats['overhead_per_cell_s']:.2f} s per cell, {share:.1f}% of the wall time"
    )
    note = (
        "\nOn an unseen pair the first repetition also fills that pair's one-time caches (the image encoder's"
        " pre-trained anchor, the text encoder's features); the second is the steady cost."
    )
    return "### Evaluation and runner cost, one run each\n" + "\n".join(lines) + "\n" + note + "\n"


def glance(reports: Path) -> str:
    """The first section of `summary.md` (the retrieval table with its caption and footnotes), and its
    tuning section when the grid ran tuned, so the equal tuning budgets sit beside the numbers."""
    summary = (reports / "summary.md").read_text().strip()
    first, *rest = summary.split("\n### ")
    tuning = [f"### {s.strip()}" for s in rest if s.startswith("Tuning")]
    return "\n\n".join([first.strip(), *tuning])


def block(reports: Path) -> str:
    """docs/results.md's block: the whole summary, the grid's time, and the one-run benchmarks."""
    summary = (reports / "summary.md").read_text().strip()
    spent = sentence(grid_time(reports / "runs", reports / "bench_eval.txt"))
    timing = trajectory_timing(reports / "bench_trajectory.txt")
    return f"{BEGIN}\n{summary}\n\n{spent}\n\n{timing}\n{evaluation_and_runner(reports)}{END}"


def readme_block(reports: Path) -> str:
    """README's block: the retrieval table at a glance and where the rest is."""
    return f"{BEGIN}\n{glance(reports)}\n\n{DOCS_LINK}\n{END}"


def replace_block(text: str, begin: str, end: str, body: str, name: str = "README") -> str:
    """`text` with what lies between its one `begin` and `end` marker (markers included) set to `body`."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"{name} needs exactly one {begin} ... {end} block.")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return head + body + tail


def updated(readme: str, reports: Path) -> str:
    """README.md's text with its block regenerated."""
    return replace_block(readme, BEGIN, END, readme_block(reports))


def updated_results(page: str, reports: Path) -> str:
    """docs/results.md's text with its block regenerated."""
    return replace_block(page, BEGIN, END, block(reports), name="docs/results.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--results-page", type=Path, default=REPO / "docs" / "results.md")
    parser.add_argument("--reports", type=Path, default=REPO / "reports" / "cpu")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args()
    stale = []
    for path, update in ((args.readme, updated), (args.results_page, updated_results)):
        current = path.read_text()
        new = update(current, args.reports)
        if new == current:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new)
    if args.check and stale:
        print(
            "out of date: " + ", ".join(str(p) for p in stale) + " (run python benchmarks/readme_summary.py)"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
