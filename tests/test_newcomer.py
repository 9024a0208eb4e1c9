"""What a new user does first, in a fresh clone: `mdd-bench run`, then `mdd-bench report`, both without
output options. Neither may touch a committed file (the reference reports under `reports/` once were
overwritten by a newcomer's own cells): everything goes under `runs/`, the report beside the results."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

REPO = Path(__file__).resolve().parents[1]


def mdd_bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "mdd_bench.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_run_then_report_in_a_clone_write_only_under_runs(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)], check=True)
    ran = mdd_bench(clone, "run", "--protocol", "smoke", "--quiet")
    assert ran.returncode == 0, ran.stderr[-2000:]
    reported = mdd_bench(clone, "report", "--no-gallery")
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert (clone / "runs" / "report" / "results.csv").is_file()
    assert "runs/report" in reported.stdout
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert status == ["!! runs/"], status
