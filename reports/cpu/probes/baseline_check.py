"""Is the native random baseline sane? The same random pairs trained hard, with WBCE at the protocol's
lrs, and with WBCE at TESLA's learned lrs (the recorded baseline), on val. Run from the repository root."""

import json
from pathlib import Path

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.distilled import DistilledSet
from mdd_bench.protocol import load_protocol
from mdd_bench.run.baselines import random_like

p = load_protocol("cpu")
ds = load_dataset("shapes", p, progress=False)
ctx = DistillContext(p, ds, seed=0, progress=False)
rec = json.loads(Path("reports/cpu/runs/cpu/shapes/tesla/b100-s0.json").read_text())
s = DistilledSet.load(rec["distilled_set"])
b = random_like(ctx, s, 0)
ev = ctx.evaluator


def src(r):
    return round(r.source().mean["mean"], 2)


print("set native", src(ev.evaluate(s, "source", "native", 1, seed=0, split="val")), flush=True)
print(
    "baseline native (learned lr + wbce)",
    src(ev.evaluate(b, "source", "native", 1, seed=0, split="val")),
    flush=True,
)
nolr = DistilledSet(b.images, b.texts, {}, dict(b.provenance))
print(
    "baseline wbce, protocol lrs",
    src(ev.evaluate(nolr, "source", "native", 1, seed=0, split="val")),
    flush=True,
)
print("baseline hard", src(ev.evaluate(b, "source", "hard", 1, seed=0, split="val")), flush=True)
print(
    "images range",
    float(b.images.min()),
    float(b.images.max()),
    "set",
    float(s.images.min()),
    float(s.images.max()),
)
