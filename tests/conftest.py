"""Every test session gets its own MDD_BENCH_HOME so caches never leak between runs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def bench_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("mdd_home")
    old = os.environ.get("MDD_BENCH_HOME")
    os.environ["MDD_BENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MDD_BENCH_HOME", None)
    else:
        os.environ["MDD_BENCH_HOME"] = old


@pytest.fixture(scope="module")
def smoke():
    """(the smoke protocol, its shapes dataset); a test module with its own `smoke` fixture overrides it."""
    from mdd_bench.data import load_dataset
    from mdd_bench.protocol import load_protocol

    protocol = load_protocol("smoke")
    return protocol, load_dataset("shapes", protocol, progress=False)
