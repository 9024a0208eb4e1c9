"""Val-only exploration of a method's hyper-parameters (how the `cpu` defaults were chosen).

Distils one cell and prints its val curve (the protocol's `[distill]` rule: val checks, never
test), best val score, iterations to best and time per iteration as one JSON line; append the lines
to a log and compare settings there.

    python benchmarks/probe_val.py lors 100 lr_img=100 lr_txt=100 seed=0 >> probe.jsonl

Hand probes made the untuned `cpu` defaults; `mdd-bench tune` now chooses settings, with the same trials
for every method. Use this script to look at one setting, not to choose one for a method alone.
"""

from __future__ import annotations

import json
import sys
import time

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method


def main() -> None:
    name, budget = sys.argv[1], int(sys.argv[2])
    overrides = dict(arg.split("=", 1) for arg in sys.argv[3:])
    seed = int(overrides.pop("seed", 0))
    protocol = load_protocol(overrides.pop("protocol", "cpu"))
    dataset = load_dataset(protocol.data.dataset, protocol, progress=False)
    cls = get_method(name)
    method = cls.for_protocol(protocol, overrides, budget)
    ctx = DistillContext(protocol, dataset, seed=seed, progress=False)
    ctx.prepare(cls.artifacts)
    start = time.perf_counter()
    method.distill(ctx, budget)
    extra = ctx.stats.extra
    keep = ("val_curve", "best_val", "learned_lr_img", "learned_lr_txt", "match_loss_last10",
            "per_modality_last10", "loss_terms")  # fmt: skip
    print(json.dumps({
        "method": name, "budget": budget, "seed": seed, "overrides": overrides,
        "iters_to_best": ctx.stats.iters_to_best, "time_per_iter_s": ctx.stats.time_per_iter_s,
        "wall_s": round(time.perf_counter() - start), **{k: extra[k] for k in keep if k in extra},
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
