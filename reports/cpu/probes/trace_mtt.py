"""MTT-VL per-iteration trace at 100 pairs under cpu: match loss per modality, learned lrs and their
gradients, data gradient norms, pixel range.

    python reports/cpu/probes/trace_mtt.py lr_img=100 lr_txt=100 lr_lr=1e-3 n=40
"""

import sys

from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.distill.matching import TrajectoryRun
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method

ov = dict(a.split("=", 1) for a in sys.argv[1:])
n = int(ov.pop("n", 40))
p = load_protocol("cpu")
ds = load_dataset("shapes", p, progress=False)
cls = get_method("mtt-vl")
m = cls.for_protocol(p, ov, 100)
ctx = DistillContext(p, ds, seed=0, progress=False)
ctx.prepare(cls.artifacts)
run = TrajectoryRun(ctx, m, 100)
print("scale", run.scale, "hp", m.hparams.lr_img, m.hparams.lr_lr, m.hparams.momentum)
for it in range(n):
    s = run.syn
    before = (s.images.detach().clone(), s.texts.detach().clone())
    run.step()
    gi = s.images.grad
    gt = s.texts.grad
    lr = {k: (float(v), None if v.grad is None else float(v.grad)) for k, v in run.lrs.items()}
    print(
        it,
        f"loss {run.losses[-1]:.4f}",
        {k: round(v, 4) for k, v in run.per_modality[-1].items()},
        "lr",
        lr,
        f"|gimg| {gi.norm() if gi is not None else -1:.3g} |gtxt| {gt.norm() if gt is not None else -1:.3g}",
        f"img range {s.images.min():.2f} {s.images.max():.2f}",
        f"dimg {(s.images.detach() - before[0]).norm():.3g}",
        flush=True,
    )
