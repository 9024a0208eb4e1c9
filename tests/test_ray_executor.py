"""`--executor ray` on a local 2-CPU Ray gives the same result files as the local executor."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

GRID = ["run", "--protocol", "smoke", "--methods", "random,herding", "--seeds", "0,1", "--budgets", "10",
        "--repetitions", "1", "--tracks", "hard", "--quiet", "--no-report",
        "--cpus-per-task", "1"]  # fmt: skip


def cells(out):
    folder = out / "smoke" / "shapes"
    return {p.relative_to(folder).as_posix(): json.loads(p.read_text()) for p in folder.glob("*/b*-s*.json")}


def test_ray_executor_writes_the_same_results_as_local(tmp_path):
    import ray

    local, distributed = tmp_path / "local", tmp_path / "ray"
    first = CliRunner().invoke(cli, [*GRID, "--out", str(local)])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(
        cli, [*GRID, "--out", str(distributed), "--executor", "ray", "--ray-cpus", "2"]
    )
    assert second.exit_code == 0, second.output
    assert not ray.is_initialized()  # the run shut down the Ray it started
    assert "summed over parallel tasks" in second.output
    ours, theirs = cells(local), cells(distributed)
    expected = {"random/b10-s0.json", "random/b10-s1.json", "herding/b10-s0.json"}
    assert expected <= set(ours) and set(ours) == set(theirs)
    for name in sorted(ours):
        a, b = ours[name], theirs[name]
        for key in ("method", "budget", "seed", "hparams", "protocol_hash"):
            assert a[key] == b[key], (name, key)
        for track, ev in a["evaluation"].items():
            other = b["evaluation"][track]
            for arch_a, arch_b in zip(ev["archs"], other["archs"], strict=True):
                assert arch_a["seeds"] == arch_b["seeds"], name
                assert arch_a["runs"] == arch_b["runs"], name  # same seeds, same threads: same numbers
    for name in expected:  # every cell has its log, and the logs are where the result is
        assert (distributed / "smoke" / "shapes" / name.replace(".json", ".log")).exists()
