"""Every method's settings resolve, without training, for every packaged protocol, each dataset it
names, each of its budgets and each ablation variant (timm's idea: sweep every default config cheaply),
and every method says what it is: a display name, a paper and a version, written into each result."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mdd_bench.protocol import list_protocols, load_protocol
from mdd_bench.registry import list_methods
from mdd_bench.run.ablations import ablation_variants

PAPER_DATASETS = ("flickr8k", "flickr30k", "coco")


def cells():
    for name in list_protocols():
        protocol = load_protocol(name)
        datasets = PAPER_DATASETS if "paper" in protocol.lineage else (protocol.data.dataset,)
        for dataset in datasets:
            for budget in protocol.budgets:
                yield name, dataset, budget


@pytest.mark.parametrize("method", sorted(list_methods()))
def test_every_protocol_budget_and_ablation_variant_resolves(method: str) -> None:
    cls = list_methods()[method]
    variants = [{}] + [
        {k: str(v) for k, v in variant.overrides.items()}
        for variant in (ablation_variants(cls) if cls.ablations else [])
    ]
    resolved = 0
    for protocol_name, dataset, budget in cells():
        protocol = load_protocol(protocol_name).with_dataset(dataset)
        for overrides in variants:
            hparams = cls.for_protocol(protocol, overrides, budget).hparams
            assert isinstance(hparams, cls.hparams_class)
            json.dumps(dataclasses.asdict(hparams))  # what a result records
            resolved += 1
    assert resolved >= len(list_protocols()) * len(variants)


@pytest.mark.parametrize("method", sorted(list_methods()))
def test_every_method_carries_its_display_name_paper_and_version(method: str) -> None:
    cls = list_methods()[method]
    info = cls.info()
    assert info["display_name"] and info["display_name"] != "" and info["paper"]
    assert isinstance(info["version"], int) and info["version"] >= 1


def test_the_report_spells_a_method_as_its_class_does() -> None:
    from mdd_bench.report.names import method_name

    assert method_name("repblend") == "RepBlend" and method_name("tesla") == "TESLA-WBCE"
    assert method_name("not-installed-here") == "not-installed-here"
