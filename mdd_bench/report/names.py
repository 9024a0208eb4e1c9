"""How methods and datasets are named and ordered in tables and figures (the paper's spelling and order).

A method is spelled as its class says (`Method.display_name`, found through the registry, so a plugin
names itself); a method that is not installed here keeps its registered name.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from mdd_bench.errors import MddError
from mdd_bench.record import FULL_DATA

METHOD_ORDER = ("random", "herding", "k-center", "forgetting", "mtt-vl", "tesla", "lors", "mdm", "repblend")
DATASET_NAMES = {"flickr8k": "Flickr8k", "flickr30k": "Flickr30k", "coco": "COCO", "shapes": "Shapes"}
DATASET_ORDER = ("flickr8k", "flickr30k", "coco", "shapes")


@cache
def method_name(method: str) -> str:
    if method == FULL_DATA:
        return "Full data"
    from mdd_bench.registry import get_method

    try:
        return get_method(method).display_name or method
    except MddError:  # not installed here: the name its results carry
        return method


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def _ordered(names: Iterable[str], order: tuple[str, ...]) -> list[str]:
    unique = list(dict.fromkeys(names))
    known = [n for n in order if n in unique]
    return known + sorted(n for n in unique if n not in order)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """Coresets, then the distillation methods in the paper's order, then any plugin alphabetically."""
    return _ordered((m for m in methods if m != FULL_DATA), METHOD_ORDER)


def ordered_datasets(datasets: Iterable[str]) -> list[str]:
    return _ordered(datasets, DATASET_ORDER)
