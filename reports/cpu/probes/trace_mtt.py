import sys, torch, json
from mdd_bench.api import DistillContext
from mdd_bench.data import load_dataset
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method
from mdd_bench.distill.matching import TrajectoryRun
ov = dict(a.split("=",1) for a in sys.argv[1:])
n = int(ov.pop("n", 40))
p = load_protocol("cpu"); ds = load_dataset("shapes", p, progress=False)
cls = get_method("mtt-vl"); m = cls.for_protocol(p, ov, 100)
ctx = DistillContext(p, ds, seed=0, progress=False); ctx.prepare(cls.artifacts)
run = TrajectoryRun(ctx, m, 100)
print("scale", run.scale, "hp", m.hparams.lr_img, m.hparams.lr_lr, m.hparams.momentum)
for it in range(n):
    s = run.syn
    before = (s.images.detach().clone(), s.texts.detach().clone())
    run.step()
    gi = s.images.grad; gt = s.texts.grad
    lr = {k: (float(v), None if v.grad is None else float(v.grad)) for k, v in run.lrs.items()}
    print(it, "loss %.4f" % run.losses[-1], {k: round(v,4) for k,v in run.per_modality[-1].items()},
          "lr", lr, "|gimg| %.3g |gtxt| %.3g" % (gi.norm() if gi is not None else -1, gt.norm() if gt is not None else -1),
          "img range %.2f %.2f dimg %.3g" % (s.images.min(), s.images.max(), (s.images.detach()-before[0]).norm()), flush=True)
