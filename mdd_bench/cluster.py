"""Joining or starting Ray, for the commands that fan work out (`run` and `tune` with `--executor ray`).

Workers resolve mdd-bench's caches exactly as the driver does (on a cluster: a shared filesystem), so the
cache and data locations and the hub's offline switches are forwarded to them.
"""

from __future__ import annotations

import os
from typing import Any

from mdd_bench.errors import MddError

FORWARDED_ENV = ("MDD_BENCH_HOME", "MDD_BENCH_DATA", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")


def connect_ray(address: str | None, num_cpus: float | None = None, progress: bool = True) -> bool:
    """Connect to (or start) Ray; True when this call started it (the caller shuts it down)."""
    try:
        import ray
    except ImportError:
        raise MddError("--executor ray needs Ray: pip install 'mdd-bench[ray]'.") from None
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    from mdd_bench.cache import default_data_root, home

    env["MDD_BENCH_HOME"] = str(home().resolve())
    env["MDD_BENCH_DATA"] = str(default_data_root().resolve())
    kwargs: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "log_to_driver": progress,
        "include_dashboard": False,
        "logging_level": "ERROR",
    }
    if address is None and num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise MddError(f"Could not start or join Ray at {where} ({exc}). Check --address.") from None
    return True
