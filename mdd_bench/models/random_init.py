"""Random weights that reproduce: the stand-in for published weights when a protocol runs offline.

`[image] pretrained = "none"` and `[text] weights = "random"` build each encoder's architecture with
random weights, so the paper's networks run end to end without a download: what that measures is time,
memory and the plumbing, never retrieval (results and reports say so). The weights must still be the same
on every call and every machine with the same torch and transformers, because they play the part of one
pretrained checkpoint: the experts, the evaluation and the cached caption embeddings all start from them.
So each encoder is built under a seed of its own (drawn from its name, so BERT and DistilBERT do not share
their draws), inside a forked RNG so the caller's random stream is left where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mdd_bench.cache import stable_hash

# Bump when the seeding changes what a random encoder's weights are (cache keys carry it).
RANDOM_INIT_VERSION = 1


def init_seed(name: str) -> int:
    """The seed encoder `name` is built with."""
    return int(stable_hash(["random-init", RANDOM_INIT_VERSION, name], length=8), 16)


@contextmanager
def seeded_init(name: str) -> Iterator[None]:
    """Build a model inside this block to get encoder `name`'s reproducible random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed(name))
        yield


def random_init_key(name: str) -> list[object]:
    """What a random encoder's weights depend on, for the keys of artifacts built from them."""
    import timm
    import transformers

    versions = [torch.__version__, timm.__version__, transformers.__version__]
    return ["random", name, RANDOM_INIT_VERSION, *versions]
