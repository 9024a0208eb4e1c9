"""A Ray cluster that is gone never makes `--executor ray` wait in silence.

Without `--address` a run starts its own local Ray even when Ray's current-cluster file (left by a `ray
start` whose cluster died uncleanly) names a dead address: plain `ray.init()` would retry that address for
about ten minutes. With `--address`, a dead cluster is one `Error:` line naming it within the bound.
The runs are subprocesses with a timeout, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mdd_bench.cluster import CONNECT_TIMEOUT_S

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

GRID = ["run", "--protocol", "smoke", "--methods", "random", "--seeds", "0", "--budgets", "10",
        "--repetitions", "1", "--tracks", "hard", "--quiet", "--no-report", "--executor", "ray"]  # fmt: skip
HANG = 300  # seconds: far above a one-cell smoke grid, far below Ray's ten minutes of retries


def closed_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mdd_bench(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mdd_bench.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ray_tmpdir():
    """Ray's temp folder for the subprocess (RAY_TMPDIR), so the planted file is Ray's current-cluster file
    without touching the machine's /tmp/ray that other Ray users read; short, for Ray's socket paths."""
    folder = Path(tempfile.mkdtemp(prefix="mddray", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_stale_current_cluster_file_does_not_stop_a_run(tmp_path, ray_tmpdir):
    from ray._common.utils import get_ray_address_file

    env = {**os.environ, "RAY_TMPDIR": str(ray_tmpdir)}
    env.pop("RAY_ADDRESS", None)
    planted = Path(get_ray_address_file(str(ray_tmpdir / "ray")))
    planted.parent.mkdir(parents=True)
    planted.write_text(f"127.0.0.1:{closed_port()}")
    out = tmp_path / "runs"
    done = mdd_bench([*GRID, "--out", str(out)], env, timeout=HANG)  # the user's command: no --address
    assert done.returncode == 0, done.stdout + done.stderr
    cell = json.loads((out / "smoke" / "shapes" / "random" / "b10-s0.json").read_text())
    assert cell["method"] == "random"


def test_an_address_that_does_not_answer_is_one_line(tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = mdd_bench([*GRID, "--out", str(tmp_path / "runs"), "--address", address], env,
                     timeout=CONNECT_TIMEOUT_S + 120)  # fmt: skip
    assert time.monotonic() - start < CONNECT_TIMEOUT_S + 60  # the import of torch and the rest: well below
    assert done.returncode != 0
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and address in errors[0], output
    assert "Traceback" not in output
    assert not (tmp_path / "runs" / "smoke" / "shapes" / "random").exists()
