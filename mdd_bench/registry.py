"""Finding methods by name: the entry-point group `mdd_bench.methods`.

Built-in methods in `mdd_bench/methods/` are registered through the same group in this project's
pyproject.toml, so a third-party package adds a method exactly the way the built-ins are added.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

from mdd_bench.api import Method
from mdd_bench.errors import MddError, unknown

GROUP = "mdd_bench.methods"


@dataclass(frozen=True)
class MethodEntry:
    cls: type[Method]
    distribution: str  # the installed distribution that registered it, e.g. "mdd-bench"
    version: str
    target: str  # the entry point's "module:Class"


def method_entries() -> dict[str, MethodEntry]:
    """Every method whose plugin loads; a broken plugin is reported, not fatal; two distributions
    registering one name is an error naming both."""
    found: dict[str, MethodEntry] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        try:
            cls = ep.load()
        except Exception as exc:  # a third party's import error must not break the harness
            warnings.warn(f"method plugin '{ep.name}' ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            warnings.warn(f"entry point '{ep.name}' is not a mdd_bench.api.Method subclass", stacklevel=2)
            continue
        name = cls.name or ep.name
        previous = found.get(name)
        if previous is not None and (previous.distribution, previous.target) != (dist, ep.value):
            raise MddError(
                f"Method '{name}' is registered twice: by {previous.distribution} ({previous.target}) "
                f"and by {dist} ({ep.value}). Uninstall one of them or rename one method."
            )
        found[name] = MethodEntry(cls, dist, version, ep.value)
    return dict(sorted(found.items()))


def list_methods() -> dict[str, type[Method]]:
    return {name: entry.cls for name, entry in method_entries().items()}


def method_distribution(name: str) -> dict[str, str]:
    """{"name", "version"} of the distribution that provides method `name` (recorded in results)."""
    entry = method_entries().get(name)
    return {"name": entry.distribution, "version": entry.version} if entry else {"name": "?", "version": "?"}


def get_method(name: str) -> type[Method]:
    """The front door for methods: the class registered under `name`."""
    methods = list_methods()
    if name not in methods:
        raise unknown("method", name, methods)
    return methods[name]


def parse_method_names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        get_method(name)
    if len(set(names)) != len(names):
        raise MddError(f"--methods lists a method twice: {text}.")
    return names
