"""The benchmarks' memory measure (`SavedBytes`): the bytes a graph holds for backward, checked against sizes
computed by hand, with a tensor saved by several operations counted once when `unique`."""

from __future__ import annotations

import torch
from bench_scripts import load_bench

bench = load_bench("bench_trajectory")


def test_a_tensor_saved_twice_is_counted_once_when_unique() -> None:
    w = torch.randn(1000, requires_grad=True)  # 4000 bytes
    a, b = torch.randn(1000), torch.randn(1000)
    graphs = {}
    for unique in (False, True):
        with bench.SavedBytes(unique=unique) as saved:
            # w * a saves a (for w's grad); w * b saves b; (w * w) saves w twice (both operands).
            loss = (w * a).sum() + (w * b).sum() + (w * w).sum()
        graphs[unique] = (saved.peak, loss)
    assert graphs[False][0] == 4 * 4000  # a, b, w, w
    assert graphs[True][0] == 3 * 4000  # a, b, w


def test_released_storage_leaves_the_live_count_and_peak_stays() -> None:
    x = torch.randn(256, requires_grad=True)
    with bench.SavedBytes(unique=True) as saved:
        loss = x.exp().sum()  # exp saves its result: 1024 bytes
        assert saved.live == 1024
        loss.backward()  # the graph frees what it saved
    assert saved.live == 0
    assert saved.peak == 1024


def test_views_of_one_storage_count_the_storage_once() -> None:
    base = torch.randn(100, 10)
    w = torch.randn(10, requires_grad=True)
    with bench.SavedBytes(unique=True) as saved:
        # each row is a view of `base`; mul saves the other operand (the view) for w's gradient
        loss = sum((w * base[i]).sum() for i in range(5))
    assert saved.peak == base.numel() * base.element_size()
    del loss
