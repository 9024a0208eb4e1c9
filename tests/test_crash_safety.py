"""SIGKILL a running `mdd-bench run` at seeded random moments; the rerun must finish with every cell
present exactly once and no file that does not parse (smoke protocol, real subprocesses)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="SIGKILL and flock are POSIX"),
    pytest.mark.slow,  # subprocess runs that build artifacts, killed and rerun
]

GRID = ["run", "--protocol", "smoke", "--budgets", "10", "--repetitions", "1", "--tracks", "hard", "--quiet",
        "--no-report"]  # fmt: skip


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory) -> Path:
    """One empty cache for this module: the first test kills artifact building, the second reuses them."""
    return tmp_path_factory.mktemp("crash_home")


def start(args: list[str], home: Path) -> subprocess.Popen:
    env = dict(os.environ, MDD_BENCH_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "mdd_bench.cli", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc: subprocess.Popen, marker, delay: float, timeout: float = 120) -> bool:
    """SIGKILL `proc` `delay` seconds after `marker()` turns true; False when it finished first."""
    deadline = time.monotonic() + timeout
    while not marker():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.communicate()
            return False
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is not None:
        proc.communicate()
        return False
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


def log_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("b10-s*.log"))


def finish(args: list[str], home: Path) -> str:
    proc = start(args, home)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return output


def check_results(out: Path, expected: set[str]) -> None:
    """Every cell exactly once, every JSON parses, every distilled set loads, no error file."""
    from mdd_bench.distilled import DistilledSet
    from mdd_bench.record import read_result

    folder = out / "smoke" / "shapes"
    found = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/b*-s*.json"))
    assert len(found) == len(set(found))
    assert set(found) == expected | {p for p in found if p.startswith("full-data/")}
    for path in out.rglob("*.json"):
        json.loads(path.read_text())  # no half-written JSON anywhere, sets' sidecars included
    for name in expected:
        result = read_result(folder / name)
        assert DistilledSet.load(result["distilled_set"]).size == result["budget"]
    assert not list(out.rglob("*.error.txt"))


def test_sigkill_during_artifact_building_then_rerun(fresh_home, tmp_path):
    out = tmp_path / "runs"
    args = [*GRID, "--methods", "random,herding", "--seeds", "0,1", "--out", str(out)]
    rng = random.Random(13)
    cache = fresh_home / "cache"
    # First while the caption embeddings / the anchor are built, then while the reference model trains.
    markers = [lambda: (cache / "text").exists(), lambda: (cache / "references").exists()]
    killed = 0
    for marker in markers:
        killed += kill_when(start(args, fresh_home), marker, rng.uniform(0.0, 2.0))
    assert killed >= 1  # at least one kill landed while artifacts were being built
    finish(args, fresh_home)
    check_results(out, {"random/b10-s0.json", "random/b10-s1.json", "herding/b10-s0.json"})
    assert any((out / "smoke" / "shapes" / "full-data").glob("b*-s0.json"))


def test_sigkill_during_cells_then_rerun(fresh_home, tmp_path):
    out = tmp_path / "runs"
    seeds = [0, 1, 2, 3, 4]
    args = [*GRID, "--methods", "random,herding", "--seeds", ",".join(map(str, seeds)), "--out", str(out)]
    rng = random.Random(7)
    killed = 0
    for _ in range(3):
        before = log_bytes(out)
        # Each run is killed a random moment after it began a cell (wrote to a cell's log).
        killed += kill_when(
            start(args, fresh_home), lambda b=before: log_bytes(out) > b, rng.uniform(0.0, 3.0)
        )
    assert killed >= 1
    finish(args, fresh_home)
    check_results(out, {f"random/b10-s{s}.json" for s in seeds} | {"herding/b10-s0.json"})


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_write_gives_the_mode_an_ordinary_write_would(tmp_path, mask):
    """mkstemp's 0600 must not leak: a result file on a shared MDD_BENCH_HOME is read by other users."""
    from mdd_bench.cache import atomic_write_json, current_umask

    old = os.umask(mask)
    try:
        assert current_umask() == mask
        path = atomic_write_json(tmp_path / "r.json", {"a": 1})
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~mask
    assert json.loads(path.read_text()) == {"a": 1} and not list(tmp_path.glob(".*.tmp"))
