"""Joining or starting Ray, for the commands that fan work out (`run` and `tune` with `--executor ray`).

Without an address this starts a local Ray (Ray's `address="local"`). A plain `ray.init()` would first
join the cluster named in Ray's current-cluster file (`/tmp/ray/ray_current_cluster`, written by `ray
start`), and when that cluster died uncleanly the file stays behind and `ray.init()` retries its dead
address for about ten minutes without a word. An address the user gave (`--address`, or `RAY_ADDRESS`
as Ray jobs set it) is probed with a bounded TCP connect first, so a cluster that is gone is one line
naming the address instead of a silent wait.

Workers resolve mdd-bench's caches exactly as the driver does (on a cluster: a shared filesystem), so the
cache and data locations and the hub's offline switches are forwarded to them.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from mdd_bench.errors import MddError

FORWARDED_ENV = ("MDD_BENCH_HOME", "MDD_BENCH_DATA", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")
# How long a cluster's address may take to accept a connection before it counts as gone.
CONNECT_TIMEOUT_S = 30.0
RAY_CLIENT_PORT = 10001  # what `ray://host` without a port means


def connect_ray(address: str | None, num_cpus: float | None = None, progress: bool = True) -> bool:
    """Connect to (or start) Ray; True when this call started it (the caller shuts it down)."""
    try:
        import ray
    except ImportError:
        raise MddError("--executor ray needs Ray: pip install 'mdd-bench[ray]'.") from None
    if ray.is_initialized():
        return False
    where = address or (f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}" if os.environ.get("RAY_ADDRESS") else None)
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address != "local":
        probe_cluster(address, where or address)
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
    if address == "local" and num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        shown = "a local Ray" if address == "local" else where
        raise MddError(f"Could not start or join Ray at {shown} ({exc}). Check --address.") from None
    return True


def probe_cluster(address: str, shown: str) -> None:
    """Fail in at most CONNECT_TIMEOUT_S, with one line naming the address, when nothing answers there.

    Only whether the port accepts a connection is checked: a dead cluster (its head gone, or its host) is
    what makes `ray.init` wait; a live one is left to Ray to join.
    """
    target = _host_port(address, shown)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise MddError(
            f"No Ray cluster answers at {shown} ({reason} within {CONNECT_TIMEOUT_S:.0f} s): start it, fix "
            "--address, or leave --address out to start a local Ray."
        ) from None


def _host_port(address: str, shown: str) -> tuple[str, int] | None:
    """The host and port `address` dials; None where only Ray knows (another client scheme)."""
    if address == "auto":  # the cluster `ray start` recorded on this node, as Ray itself reads it
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:
            return None
        try:
            address = canonicalize_bootstrap_address_or_die("auto")
        except ConnectionError:
            raise MddError(
                "--address auto: no Ray cluster runs on this node (start one with `ray start --head`, or "
                "leave --address out to start a local Ray)."
            ) from None
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "ray":
        return None
    host, colon, port = rest.rpartition(":")
    if not colon and sep:
        return rest, RAY_CLIENT_PORT
    if not colon or not host or not port.isdigit():
        raise MddError(f"Ray address '{shown}' is not HOST:PORT, ray://HOST[:PORT] or auto.")
    return host.strip("[]"), int(port)
