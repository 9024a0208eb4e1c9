"""The shared distillation layer: what MDM and the trajectory methods have in common.

- `synthetic.py`: the learnable synthetic set (pixels, text embeddings, learnable extras) and its
  optimiser, turned into a `DistilledSet`;
- `loop.py`: the loop's bookkeeping (val selection every k iterations, best kept, timing);
- `resume.py`: the checkpoints that let a stopped run go on from its last val check;
- `init.py`: data initialisation (K-means on pair features and its ablation variants);
- `merge.py`: models from flat per-modality vectors, expert banks, Model-Stock merges;
- `kernels.py`: kernel energies between feature sets on the unit sphere.
"""

from mdd_bench.distill.init import DATA_INITS, initial_pairs, kmeans_nearest, pair_features
from mdd_bench.distill.kernels import kernel_energy, sphere_kernel
from mdd_bench.distill.loop import DistillLoop
from mdd_bench.distill.merge import (
    MODEL_INITS,
    ExpertBank,
    TeacherSampler,
    model_stock_merge,
    model_stock_ratio,
)
from mdd_bench.distill.resume import Checkpoint, Resumable
from mdd_bench.distill.synthetic import SyntheticSet

__all__ = [
    "DATA_INITS",
    "MODEL_INITS",
    "Checkpoint",
    "DistillLoop",
    "ExpertBank",
    "Resumable",
    "SyntheticSet",
    "TeacherSampler",
    "initial_pairs",
    "kernel_energy",
    "kmeans_nearest",
    "model_stock_merge",
    "model_stock_ratio",
    "pair_features",
    "sphere_kernel",
]
