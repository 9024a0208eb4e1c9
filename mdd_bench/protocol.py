"""Protocols: everything that must be identical across methods, read from TOML.

The packaged protocols live in `mdd_bench/protocols/*.toml`; `load_protocol` also accepts the path of a
user's file with the same sections.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .cache import stable_hash
from .errors import MddError, unknown


@dataclass(frozen=True)
class ShapesSizes:
    """Image counts of the generated `shapes` corpus (five captions per image)."""

    train: int = 4000
    val: int = 500
    test: int = 500
    seed: int = 0


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "shapes"
    resolution: int = 32
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    shapes: ShapesSizes = field(default_factory=ShapesSizes)


@dataclass(frozen=True)
class ImageSpec:
    source: str = "test_nfnet"
    unseen: tuple[str, ...] = ()
    # "imagenet": timm's published weights; "anchor": mdd-bench's offline classification pretraining;
    # "none": random init.
    pretrained: str = "anchor"
    # The "anchor" pretraining: a generated shape x colour classification corpus disjoint from `shapes`.
    anchor_images: int = 8000
    anchor_epochs: int = 4
    anchor_seed: int = 1000


@dataclass(frozen=True)
class TextSpec:
    source: str = "minilm"
    unseen: tuple[str, ...] = ()
    max_length: int = 32
    pooling: str = "cls"
    batch_size: int = 256


@dataclass(frozen=True)
class ModelSpec:
    # 0: the text head projects into the image encoder's own feature dimension, as the references do.
    projection_dim: int = 0
    temperature: float = 0.07


@dataclass(frozen=True)
class ExpertSpec:
    num_experts: int = 20
    epochs: int = 10
    keep_epochs: int = 10
    lr: float = 0.1
    batch_size: int = 128
    # Random resized crop + flip + RandAugment on the real training images (the references' buffer.py).
    real_augment: bool = False


@dataclass(frozen=True)
class PairRecipe:
    """The evaluation recipe of one (image encoder, text encoder) pair, chosen on val by `tune-eval`.

    Unset values fall back to the protocol's [eval] section.
    """

    image: str
    text: str
    lr_img: float | None = None
    lr_txt: float | None = None
    dsa: bool | None = None
    epochs: int | None = None


@dataclass(frozen=True)
class EvalSpec:
    epochs: int = 100
    optimizer: str = "sgd"
    lr_img: float = 0.1
    lr_txt: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_epoch: int = 51
    lr_decay: float = 0.1
    batch_size: int = 128
    repetitions: int = 5
    # The full-data upper bound trains on every training pair, so it needs far fewer epochs.
    full_data_epochs: int = 10
    full_data_repetitions: int = 3
    # DSA on every batch of a distilled set (MDM's and MTT's evaluation); see augment.py.
    dsa: bool = False
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"
    # Random resized crop + flip + RandAugment on real images in the full-data run.
    real_augment: bool = False
    # Per encoder pair overrides of lr_img, lr_txt, dsa, epochs ([[eval.recipes]] tables).
    recipes: tuple[PairRecipe, ...] = ()

    def pair_recipe(self, image: str, text: str) -> dict[str, Any]:
        """lr_img, lr_txt, dsa and epochs of one encoder pair (its recipe entry, else the defaults)."""
        values = {"lr_img": self.lr_img, "lr_txt": self.lr_txt, "dsa": self.dsa, "epochs": self.epochs}
        for entry in self.recipes:
            if (entry.image, entry.text) == (image, text):
                values.update(
                    {k: v for k, v in dataclasses.asdict(entry).items() if k in values and v is not None}
                )
        return values


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str = ""
    budgets: tuple[int, ...] = (100, 200, 500)
    # Distillation seeds `mdd-bench run` uses by default (deterministic methods run the first only).
    seeds: tuple[int, ...] = (0,)
    data: DataSpec = field(default_factory=DataSpec)
    image: ImageSpec = field(default_factory=ImageSpec)
    text: TextSpec = field(default_factory=TextSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    experts: ExpertSpec = field(default_factory=ExpertSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out

    @property
    def hash(self) -> str:
        """Identifies the settings (not the file they came from): results carry it."""
        return stable_hash(self.to_dict())

    def with_dataset(self, dataset: str) -> Protocol:
        return dataclasses.replace(self, data=dataclasses.replace(self.data, dataset=dataset))


_SECTIONS = {
    "data": DataSpec,
    "image": ImageSpec,
    "text": TextSpec,
    "model": ModelSpec,
    "experts": ExpertSpec,
    "eval": EvalSpec,
}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(values) - set(names))
    if extra:
        raise MddError(f"{where}: unknown key '{extra[0]}'. Allowed keys: {', '.join(sorted(names))}.")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key == "shapes":
            value = _build(ShapesSizes, value, f"{where}.shapes")
        elif key == "recipes":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise MddError(f"{where}: 'recipes' must be [[eval.recipes]] tables.")
            value = tuple(_build(PairRecipe, v, f"{where}.recipes") for v in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def parse_protocol(raw: dict[str, Any], source: str) -> Protocol:
    raw = dict(raw)
    kwargs: dict[str, Any] = {"source": source}
    for section, cls in _SECTIONS.items():
        if section in raw:
            value = raw.pop(section)
            if not isinstance(value, dict):
                raise MddError(f"{source}: [{section}] must be a table.")
            kwargs[section] = _build(cls, value, f"{source} [{section}]")
    top = {"name", "description", "budgets", "seeds"}
    extra = sorted(set(raw) - top)
    if extra:
        raise MddError(
            f"{source}: unknown key '{extra[0]}'. Allowed: {', '.join(sorted(top | set(_SECTIONS)))}."
        )
    if "name" not in raw:
        raise MddError(f"{source}: missing key 'name'. Add name = \"...\" at the top of the file.")
    kwargs.update({k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    protocol = Protocol(**kwargs)
    if any(b <= 0 for b in protocol.budgets):
        raise MddError(f"{source}: budgets must be positive integers, got {list(protocol.budgets)}.")
    if not protocol.seeds or any(not isinstance(v, int) or v < 0 for v in protocol.seeds):
        raise MddError(f"{source}: seeds must be non-negative integers, got {list(protocol.seeds)}.")
    return protocol


def list_protocols() -> list[str]:
    folder = resources.files("mdd_bench") / "protocols"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_protocol(name_or_path: str | Path = "cpu") -> Protocol:
    """The front door for protocols: a packaged name (`smoke`, `cpu`, `paper`) or a TOML file path."""
    text: str
    source = str(name_or_path)
    path = Path(name_or_path)
    if source.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise MddError(f"Protocol file '{path}' does not exist. Pass a packaged name or a path.")
        text = path.read_text()
    else:
        names = list_protocols()
        if source not in names:
            raise unknown("protocol", source, names)
        text = (resources.files("mdd_bench") / "protocols" / f"{source}.toml").read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MddError(f"Protocol file '{source}' is not valid TOML: {exc}.") from None
    try:
        return parse_protocol(raw, source)
    except TypeError as exc:
        raise MddError(f"Protocol '{source}': {exc}.") from None
