"""Finding methods by name: the entry-point group `mdd_bench.methods`.

Built-in methods in `mdd_bench/methods/` are registered through the same group in this project's
pyproject.toml, so a third-party package adds a method exactly the way the built-ins are added.

The registry is lazy: names come from the installed distributions' metadata without importing any
plugin, a method's module is imported the first time that method is asked for, and what was loaded is
kept. The entry-point name is the method's name.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from mdd_bench.api import Method
from mdd_bench.errors import MddError, unknown

GROUP = "mdd_bench.methods"


@dataclass(frozen=True)
class MethodEntry:
    cls: type[Method]
    distribution: str  # the installed distribution that registered it, e.g. "mdd-bench"
    version: str
    target: str  # the entry point's "module:Class"


def _origin(ep: EntryPoint) -> tuple[str, str, str]:
    dist = ep.dist.name if ep.dist is not None else "?"
    version = ep.dist.version if ep.dist is not None else "?"
    return dist, version, ep.value


@lru_cache(maxsize=8)
def _points(path: tuple[str, ...]) -> dict[str, tuple[EntryPoint, ...]]:
    """The group's entry points by name for one `sys.path` (a plugin put on the path later is seen)."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        same = [p for p in found.get(ep.name, []) if _origin(p)[::2] == _origin(ep)[::2]]
        if not same:  # one distribution seen twice on the path is one registration
            found.setdefault(ep.name, []).append(ep)
    return {name: tuple(eps) for name, eps in sorted(found.items())}


def method_names() -> list[str]:
    """Every registered method name, without importing any plugin."""
    return list(_points(tuple(sys.path)))


@lru_cache(maxsize=64)
def _load(ep: EntryPoint, path: tuple[str, ...]) -> MethodEntry | None:
    """A plugin's class, imported once per `sys.path`; a broken plugin is reported (a warning), not fatal."""
    dist, version, target = _origin(ep)
    try:
        cls = ep.load()
    except Exception as exc:  # a third party's import error must not break the harness
        warnings.warn(f"method plugin '{ep.name}' ({target}) failed to load: {exc}", stacklevel=3)
        return None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        warnings.warn(f"entry point '{ep.name}' is not a mdd_bench.api.Method subclass", stacklevel=3)
        return None
    if cls.name and cls.name != ep.name:
        raise MddError(
            f"Entry point '{ep.name}' of {dist} loads a method named '{cls.name}': register it under its "
            "own name (the entry point's name is the method's)."
        )
    return MethodEntry(cls, dist, version, target)


def _entry(name: str) -> MethodEntry | None:
    path = tuple(sys.path)
    eps = _points(path).get(name, ())
    if len(eps) > 1:
        (a, _, ta), (b, _, tb) = _origin(eps[0]), _origin(eps[1])
        raise MddError(
            f"Method '{name}' is registered twice: by {a} ({ta}) and by {b} ({tb}). "
            "Uninstall one of them or rename one method."
        )
    return _load(eps[0], path) if eps else None


def method_entries() -> dict[str, MethodEntry]:
    """Every method whose plugin loads (this imports them all: `method_names` does not)."""
    entries = {name: _entry(name) for name in method_names()}
    return {name: entry for name, entry in entries.items() if entry is not None}


def list_methods() -> dict[str, type[Method]]:
    return {name: entry.cls for name, entry in method_entries().items()}


def method_distribution(name: str) -> dict[str, str]:
    """{"name", "version"} of the distribution that provides method `name` (recorded in results)."""
    entry = _entry(name)
    return {"name": entry.distribution, "version": entry.version} if entry else {"name": "?", "version": "?"}


def get_method(name: str) -> type[Method]:
    """The front door for methods: the class registered under `name`, its plugin imported on first use."""
    names = method_names()
    if name not in names:
        raise unknown("method", name, names)
    entry = _entry(name)
    if entry is None:
        raise MddError(
            f"Method '{name}' is registered but its plugin failed to load (see the warning above)."
        )
    return entry.cls


def parse_method_names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        get_method(name)
    if len(set(names)) != len(names):
        raise MddError(f"--methods lists a method twice: {text}.")
    return names
