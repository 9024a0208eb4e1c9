"""`--drain-file`: once the file exists no cell starts, the running ones finish, and a rerun goes on."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli

pytestmark = pytest.mark.slow  # runs smoke cells

RUN = ["run", "--protocol", "smoke", "--methods", "random", "--budgets", "10", "--seeds", "0,1,2",
       "--repetitions", "1", "--tracks", "hard", "--no-report", "--quiet"]  # fmt: skip


def results(out):
    return sorted(p.name for p in (out / "smoke" / "shapes" / "random").glob("b*-s*.json"))


def test_an_existing_drain_file_starts_nothing_and_a_rerun_without_it_runs_all(tmp_path):
    out, drain = tmp_path / "runs", tmp_path / "DRAIN"
    drain.touch()
    held = CliRunner().invoke(cli, [*RUN, "--out", str(out), "--drain-file", str(drain)])
    assert held.exit_code == 0, held.output  # a drain is a planned stop, not a failure
    assert results(out) == []
    assert "3 cell(s) not started, the drain file exists" in held.output
    drain.unlink()
    resumed = CliRunner().invoke(cli, [*RUN, "--out", str(out), "--drain-file", str(drain)])
    assert resumed.exit_code == 0, resumed.output
    assert results(out) == ["b10-s0.json", "b10-s1.json", "b10-s2.json"]
    assert "not started" not in resumed.output


def test_a_drain_file_that_appears_lets_the_running_cell_finish_and_starts_no_other(tmp_path, monkeypatch):
    from mdd_bench.run import executors

    out, drain = tmp_path / "runs", tmp_path / "DRAIN"
    real = executors.execute_cell

    def first_cell_then_drain(*args, **kwargs):  # the file appears while the first cell runs
        drain.touch()
        return real(*args, **kwargs)

    monkeypatch.setattr(executors, "execute_cell", first_cell_then_drain)
    run = CliRunner().invoke(cli, [*RUN, "--out", str(out), "--drain-file", str(drain)])
    assert run.exit_code == 0, run.output
    assert results(out) == ["b10-s0.json"]  # finished, though the file appeared while it ran
    assert "2 cell(s) not started" in run.output and "random/b10-s1" in run.output


@pytest.mark.ray
def test_ray_submits_cells_as_slots_free_so_a_drain_leaves_none_queued(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from mdd_bench.run.executors import RayExecutor

    out, drain = tmp_path / "runs", tmp_path / "DRAIN"
    real = RayExecutor._outcome

    def drain_after_first(*args, **kwargs):  # the driver learns of the first finished cell, then drains
        outcome = real(*args, **kwargs)
        drain.touch()
        return outcome

    monkeypatch.setattr(RayExecutor, "_outcome", staticmethod(drain_after_first))
    args = ["--executor", "ray", "--ray-cpus", "2", "--cpus-per-task", "1", "--drain-file", str(drain)]
    run = CliRunner().invoke(cli, [*RUN, "--out", str(out), *args])
    assert run.exit_code == 0, run.output
    # Two slots: seeds 0 and 1 were running and both finish; seed 2 was never submitted.
    assert results(out) == ["b10-s0.json", "b10-s1.json"]
    assert "1 cell(s) not started" in run.output and "random/b10-s2" in run.output
