"""Finding methods by name: the entry-point group `mdd_bench.methods`.

Built-in methods in `methods/` are registered through the same group in this project's
pyproject.toml, so a third-party package adds a method exactly the way the built-ins are added.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from .api import Method
from .errors import MddError, unknown

GROUP = "mdd_bench.methods"


def list_methods() -> dict[str, type[Method]]:
    """Every method whose plugin loads; a broken plugin is reported, not fatal."""
    found: dict[str, type[Method]] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a third party's import error must not break the harness
            warnings.warn(f"method plugin '{ep.name}' ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            warnings.warn(f"entry point '{ep.name}' is not a mdd_bench.api.Method subclass", stacklevel=2)
            continue
        found[cls.name or ep.name] = cls
    return dict(sorted(found.items()))


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
