"""Failure isolation, cell locks, the artifact lock and `--dry-run` (smoke protocol)."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

RUN = ["run", "--protocol", "smoke", "--repetitions", "1", "--budgets", "10", "--tracks", "hard", "--quiet"]

FLAKY = '''
import os

from mdd_bench.api import DistillContext, Method


class Flaky(Method):
    """Random pairs, but raises for seed 1 while FLAKY_FAIL=1: a cell that fails on demand."""

    name = "flaky"
    family = "coreset"
    artifacts = ("text_features",)

    def distill(self, ctx: DistillContext, budget: int):
        if os.environ.get("FLAKY_FAIL") == "1" and ctx.seed == 1:
            raise RuntimeError("boom at seed 1\\nsecond line stays in the log")
        return ctx.coreset(list(range(ctx.seed, ctx.seed + budget)), method=self.name)
'''


@pytest.fixture
def flaky_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "flaky_plugin").mkdir(parents=True)
    (site / "flaky_plugin" / "__init__.py").write_text(textwrap.dedent(FLAKY))
    dist = site / "flaky_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flaky-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mdd_bench.methods]\nflaky = flaky_plugin:Flaky\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("flaky_plugin", None)


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def test_a_failed_cell_is_recorded_the_grid_goes_on_and_a_rerun_retries_only_it(
    flaky_plugin, tmp_path, monkeypatch, bench_home
):
    out = tmp_path / "runs"
    grid = [*RUN, "--methods", "flaky,random", "--seeds", "0,1", "--out", str(out)]
    monkeypatch.setenv("FLAKY_FAIL", "1")
    first = CliRunner().invoke(cli, grid)
    assert first.exit_code != 0
    assert "1 cell(s) failed: flaky/b10-s1" in first.output and "Traceback" not in first.output
    assert "first: RuntimeError: boom at seed 1" in first.output  # the cause on the terminal too
    folder = out / "smoke" / "shapes"
    error = folder / "flaky" / "b10-s1.error.txt"
    assert error.read_text() == "RuntimeError: boom at seed 1\n"  # one line
    log = (folder / "flaky" / "b10-s1.log").read_text()
    assert "Traceback" in log and "second line stays in the log" in log
    assert not (folder / "flaky" / "b10-s1.json").exists()
    done = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/b10-s*.json"))
    assert done == ["flaky/b10-s0.json", "random/b10-s0.json", "random/b10-s1.json"]  # the rest went on
    mtimes = {p: (folder / p).stat().st_mtime_ns for p in done}

    # The dry run sees it, and builds or writes nothing.
    before = files_under(out, bench_home)
    dry = CliRunner().invoke(cli, [*grid, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "to run (failed before: RuntimeError: boom at seed 1)" in dry.output
    assert "cells: 4 in the grid, 3 done, 1 to run (1 failed before)" in dry.output
    assert "estimate: 1 distillation(s); 1 evaluation training(s)" in dry.output
    assert files_under(out, bench_home) == before

    monkeypatch.setenv("FLAKY_FAIL", "0")
    second = CliRunner().invoke(cli, [*grid[:-1], str(out)])
    assert second.exit_code == 0, second.output
    assert (folder / "flaky" / "b10-s1.json").exists() and not error.exists()
    assert {p: (folder / p).stat().st_mtime_ns for p in done} == mtimes  # only the failed cell reran
    assert "time by stage" in second.output and "results:" in second.output


def test_a_cell_held_by_another_run_is_left_to_it(tmp_path):
    from mdd_bench.locks import try_cell_lock

    out = tmp_path / "runs"
    held = out / "smoke" / "shapes" / "random" / "b10-s1.json"
    with try_cell_lock(held) as mine:
        assert mine
        res = CliRunner().invoke(cli, [*RUN, "--methods", "random", "--seeds", "0,1", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "1 cell(s) were running in another process (random/b10-s1)" in res.output
        assert not held.exists() and held.with_name("b10-s0.json").exists()
        dry = CliRunner().invoke(
            cli, [*RUN, "--methods", "random", "--seeds", "0,1", "--out", str(out), "--dry-run"]
        )
        assert "running elsewhere" in dry.output


def test_two_threads_asking_for_one_artifact_build_it_once(monkeypatch):
    import dataclasses

    from mdd_bench.pretrained import anchors
    from mdd_bench.protocol import load_protocol

    protocol = load_protocol("smoke")
    # A key of its own, so nothing cached by another test answers.
    protocol = dataclasses.replace(protocol, image=dataclasses.replace(protocol.image, anchor_seed=4242))
    real = anchors.train_anchor
    calls = []

    def slow_train(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the second caller to arrive while the first builds
        return real(*args, **kwargs)

    monkeypatch.setattr(anchors, "train_anchor", slow_train)
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(anchors.ensure_anchor("test_nfnet", protocol, False)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(paths) == 2 and paths[0] == paths[1] and paths[0].exists()
    assert not list(paths[0].parent.glob(f".{paths[0].name}.*.tmp"))


def test_build_once_waits_for_the_first_builder_then_reuses(tmp_path):
    from mdd_bench.locks import build_once

    target = tmp_path / "artifact.txt"
    built = []

    def build():
        built.append(1)
        time.sleep(0.3)
        target.write_text("done")

    threads = [threading.Thread(target=build_once, args=(target, target.exists, build)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [1] and target.read_text() == "done"


def test_dry_run_on_an_empty_cache_lists_what_it_would_build(tmp_path, monkeypatch):
    home = tmp_path / "fresh_home"
    monkeypatch.setenv("MDD_BENCH_HOME", str(home))
    out = tmp_path / "runs"
    res = CliRunner().invoke(cli, [*RUN, "--methods", "random,herding", "--out", str(out), "--dry-run"])
    assert res.exit_code == 0, res.output
    for line in ("data shapes", "anchor test_nfnet", "full-data reference (shapes), 1 repetition"):
        assert line in res.output
    assert "2 distillation(s)" in res.output and "artifact(s) to build" in res.output
    assert not files_under(home, out)  # nothing built, nothing written


def test_unknown_executor_options_are_one_line_errors(tmp_path):
    res = CliRunner().invoke(cli, [*RUN, "--methods", "random", "--address", "auto", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--executor ray" in res.output and "Traceback" not in res.output


def test_first_run_output_timing_breakdown_and_full_data_repetitions(tmp_path):
    """The run ends with the time per stage and where the results and the report are; the coreset
    feature model trains one repetition, and the report's full-data row says how many it has."""
    out = tmp_path / "runs"
    res = CliRunner().invoke(cli, [*RUN, "--methods", "herding", "--out", str(out)])
    assert res.exit_code == 0, res.output
    timing = res.output.split("time by stage, 2 cell(s) run here:")[1]  # herding and its random baseline
    for stage in ("distill", "evaluate", "report", "total (wall)"):
        assert f"\n{stage} " in timing, timing
    report_line = next(line for line in res.output.splitlines() if line.startswith("report:"))
    assert Path(report_line.split()[1]).exists() and f"results: {out}" in res.output
    full = next((out / "smoke" / "shapes" / "full-data").glob("b*-s0.json"))
    runs = json.loads(full.read_text())["evaluation"]["hard"]["archs"][0]["runs"]
    report = (out / "report" / "smoke" / "report_hard.md").read_text()
    reps = f"each the mean of {len(runs)} training repetition"
    assert reps in report
    if len(runs) < 2:
        assert "--full-data-repetitions 2" in res.output
