"""Which protocols of a results folder are variants of one another, so the report can put them side by side.

A packaged protocol that says `base = "cpu"` (cpu-frozen) changes some settings of cpu (its evaluation
recipe) and keeps the rest: its numbers and cpu's answer one question ("what does the change do?"). Result
files record the protocol's name and settings but not its bases, so the lineage is read from the packaged
protocol of that name; any other name (a user's file) is a lineage of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from mdd_bench.errors import MddError
from mdd_bench.protocol import list_protocols, load_protocol


def protocol_lineage(name: str) -> tuple[str, ...]:
    """(name, its base, that one's base, ...) of a packaged protocol; (name,) for any other."""
    if name not in list_protocols():
        return (name,)
    try:
        return load_protocol(name).lineage
    except MddError:  # a packaged file that no longer parses must not break the report of old results
        return (name,)


def lineage_groups(protocols: Iterable[str]) -> dict[str, list[str]]:
    """The protocols present that share a root, for each root with two or more of them: the root (or the
    member closest to it) first, then the others by distance from the root and name."""
    by_root: dict[str, list[tuple[int, str]]] = {}
    for name in dict.fromkeys(protocols):
        lineage = protocol_lineage(name)
        by_root.setdefault(lineage[-1], []).append((len(lineage), name))
    return {root: [n for _, n in sorted(members)] for root, members in by_root.items() if len(members) > 1}


@dataclass(frozen=True)
class Lineage:
    """Two or more protocols of one lineage found in the results: `protocols` in comparison order (the
    first is the reference the others are measured against) and the results frame of all of them."""

    protocols: tuple[str, ...]
    frame: pd.DataFrame


def lineages(frame: pd.DataFrame) -> dict[str, Lineage]:
    """Each protocol of the results that has a variant (or a base) among them -> its lineage."""
    out = {}
    for members in lineage_groups(frame["protocol"]).values():
        lineage = Lineage(tuple(members), frame[frame["protocol"].isin(members)])
        out.update({name: lineage for name in members})
    return out


def description(name: str) -> str:
    """What a packaged protocol is (its `description`); empty for any other."""
    if name not in list_protocols():
        return ""
    try:
        return load_protocol(name).description
    except MddError:
        return ""
