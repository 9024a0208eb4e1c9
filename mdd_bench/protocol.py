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
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
)

from mdd_bench.cache import stable_hash
from mdd_bench.errors import MddError, unknown


@dataclass(frozen=True)
class ShapesSizes:
    """Image counts of the generated `shapes` corpus (five captions per image)."""

    train: PositiveInt = 4000
    val: PositiveInt = 500
    test: PositiveInt = 500
    seed: NonNegativeInt = 0


@dataclass(frozen=True)
class DataSpec:
    dataset: str = "shapes"
    resolution: PositiveInt = 32
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    shapes: ShapesSizes = field(default_factory=ShapesSizes)


@dataclass(frozen=True)
class ImageSpec:
    source: str = "test_nfnet"
    unseen: tuple[str, ...] = ()
    # "imagenet": timm's published weights; "anchor": mdd-bench's offline classification pretraining;
    # "none": seeded random init (cost and plumbing only: results and reports are marked so).
    pretrained: Literal["imagenet", "anchor", "none"] = "anchor"
    # The "anchor" pretraining: a generated shape x colour classification corpus disjoint from `shapes`.
    anchor_images: PositiveInt = 8000
    anchor_epochs: PositiveInt = 4
    anchor_seed: NonNegativeInt = 1000


@dataclass(frozen=True)
class TextSpec:
    source: str = "minilm"
    unseen: tuple[str, ...] = ()
    # "pretrained": each encoder's published (or packaged) weights; "random": the same architectures with
    # seeded random weights and a local tokenizer, offline (cost and plumbing only, marked like "none").
    weights: Literal["pretrained", "random"] = "pretrained"
    max_length: PositiveInt = 32
    pooling: Literal["cls", "mean"] = "cls"
    batch_size: PositiveInt = 256


@dataclass(frozen=True)
class ModelSpec:
    # 0: the text head projects into the image encoder's own feature dimension, as the references do.
    projection_dim: NonNegativeInt = 0
    temperature: PositiveFloat = 0.07


@dataclass(frozen=True)
class ExpertSpec:
    num_experts: PositiveInt = 20
    epochs: PositiveInt = 10
    keep_epochs: NonNegativeInt = 10
    lr: PositiveFloat = 0.1
    batch_size: PositiveInt = 128
    # Random resized crop + flip + RandAugment on the real training images (the references' buffer.py).
    real_augment: bool = False


@dataclass(frozen=True)
class PairRecipe:
    """The evaluation recipe of one (image encoder, text encoder) pair, chosen on val by `tune-eval`.

    Unset values fall back to the protocol's [eval] section.
    """

    image: str
    text: str
    lr_img: PositiveFloat | None = None
    lr_txt: PositiveFloat | None = None
    dsa: bool | None = None
    epochs: PositiveInt | None = None
    # The full-data run trains on every training pair (about 100x more steps): its image lr is chosen on
    # val on its own (`tune-eval`), falling back to lr_img.
    full_lr_img: PositiveFloat | None = None


# What the evaluation trains (mirrors `models.dual.TOWERS`): the image encoder and a text head (MTT-VL's,
# LoRS's, MDM's recipe), or two heads on a frozen image encoder (RepBlend's).
Towers = Literal["backbone+text-head", "frozen-backbone+heads"]
DEFAULT_TOWERS = "backbone+text-head"
DEFAULT_TEXT_WEIGHTS = "pretrained"


@dataclass(frozen=True)
class EvalSpec:
    # Which parameters the evaluation trains (`Towers`); lr_img is the image encoder's or the image
    # head's learning rate accordingly.
    towers: Towers = DEFAULT_TOWERS
    epochs: PositiveInt = 100
    optimizer: Literal["sgd"] = "sgd"
    lr_img: PositiveFloat = 0.1
    lr_txt: PositiveFloat = 0.1
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    lr_decay_epoch: NonNegativeInt = 51
    lr_decay: PositiveFloat = 0.1
    batch_size: PositiveInt = 128
    repetitions: PositiveInt = 5
    # The full-data upper bound trains on every training pair, so it needs far fewer epochs.
    full_data_epochs: PositiveInt = 10
    full_data_repetitions: PositiveInt = 3
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

    def full_data_lr_img(self, image: str, text: str) -> float:
        """The image lr of the full-data run of an encoder pair (its own choice, else the pair's lr)."""
        for entry in self.recipes:
            if (entry.image, entry.text) == (image, text) and entry.full_lr_img is not None:
                return entry.full_lr_img
        return self.pair_recipe(image, text)["lr_img"]


@dataclass(frozen=True)
class DistillSpec:
    """The one run-length and selection rule of every iterative method (none may set its own).

    A run checks val every `eval_every` iterations (iteration 0, the initial set, included) with the
    same `val_repetitions` seeds at every check (paired), stops once no selected track has improved for
    `patience` checks or at `max_iterations`, then re-scores each track's `rescore_top` best checks with
    `rescore_repetitions` runs and keeps, per track, the check that scores best.
    """

    max_iterations: NonNegativeInt = 3000
    eval_every: PositiveInt = 50
    patience: PositiveInt = 10
    val_repetitions: PositiveInt = 2
    rescore_top: PositiveInt = 3
    rescore_repetitions: PositiveInt = 5


@dataclass(frozen=True)
class TuningSpec:
    """`mdd-bench tune`'s budget, the same for every method: trials per (method, budget), the pruner on
    the val curve, the distillation seeds trials run with (never a grid seed) and the objective track."""

    trials: NonNegativeInt = 16
    seeds: tuple[NonNegativeInt, ...] = (100,)
    pruner: Literal["hyperband", "successive-halving", "none"] = "hyperband"
    # The pruner's smallest budget, in iterations (its largest is [distill] max_iterations).
    min_iterations: PositiveInt = 100
    # Trials drawn at random before TPE models the results.
    startup_trials: NonNegativeInt = 5
    sampler_seed: NonNegativeInt = 0
    objective: Literal["hard"] = "hard"


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str = ""
    budgets: tuple[PositiveInt, ...] = (100, 200, 500)
    # Distillation seeds `mdd-bench run` uses by default (deterministic methods run the first only).
    seeds: tuple[NonNegativeInt, ...] = (0,)
    data: DataSpec = field(default_factory=DataSpec)
    image: ImageSpec = field(default_factory=ImageSpec)
    text: TextSpec = field(default_factory=TextSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    experts: ExpertSpec = field(default_factory=ExpertSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    tuning: TuningSpec = field(default_factory=TuningSpec)
    source: str = ""
    # The packaged protocol this one inherits from (`base = "cpu"`), and that one's, ...: method
    # defaults are looked up by name along (name, *bases).
    bases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The settings. `[eval] towers` and `[text] weights` are left out at their defaults, so every
        protocol written before the options keeps its hash (and its cached references and tuning logs)."""
        out = dataclasses.asdict(self)
        out.pop("source")
        out.pop("bases")
        if out["eval"]["towers"] == DEFAULT_TOWERS:
            del out["eval"]["towers"]
        if out["text"]["weights"] == DEFAULT_TEXT_WEIGHTS:
            del out["text"]["weights"]
        return out

    @property
    def hash(self) -> str:
        """Identifies the settings (not the file they came from): results carry it."""
        return stable_hash(self.to_dict())

    @property
    def random_weights(self) -> bool:
        """Some encoder has random weights (`[image] pretrained = "none"`, `[text] weights = "random"`):
        what it runs measures cost and plumbing only, so every result and report made with it says so."""
        return self.image.pretrained == "none" or self.text.weights == "random"

    @property
    def lineage(self) -> tuple[str, ...]:
        return (self.name, *self.bases)

    def with_dataset(self, dataset: str) -> Protocol:
        return dataclasses.replace(self, data=dataclasses.replace(self.data, dataset=dataset))


SECTIONS = ("data", "image", "text", "model", "experts", "eval", "distill", "tuning")
# Sections a protocol may leave out (their defaults apply).
OPTIONAL_SECTIONS = ("distill", "tuning")
TOP_KEYS = ("name", "description", "budgets", "seeds", "base")
# Every spec rejects unknown keys; values are validated (and TOML lists become tuples) by pydantic.
for _spec in (
    ShapesSizes,
    DataSpec,
    ImageSpec,
    TextSpec,
    ModelSpec,
    ExpertSpec,
    PairRecipe,
    EvalSpec,
    DistillSpec,
    TuningSpec,
    Protocol,
):
    _spec.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
_PROTOCOL = TypeAdapter(Protocol)


def _where(loc: tuple[Any, ...]) -> str:
    """('eval', 'recipes', 0, 'lr') -> "[eval] recipes[0].lr"; ('budgets', 1) -> "budgets[1]"."""
    parts = [str(p) for p in loc]
    path = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1 if parts[0] in SECTIONS else 0 :])
    return f"[{parts[0]}] {path.lstrip('.')}".strip() if parts[0] in SECTIONS else path.lstrip(".")


def validation_message(exc: ValidationError, source: str) -> str:
    """One line naming the file, the key and what is wrong with it."""
    first = exc.errors()[0]
    where = _where(first["loc"])
    more = f" ({exc.error_count() - 1} more problem(s) after this one)" if exc.error_count() > 1 else ""
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{source}: unknown key '{first['loc'][-1]}' ({where}).{more}"
    if first["type"] == "missing":
        return f"{source}: missing key '{where}'.{more}"
    return f"{source}: {where} = {first.get('input')!r}: {first['msg']}.{more}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the base's."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def parse_protocol(raw: dict[str, Any], source: str, _seen: tuple[str, ...] = ()) -> Protocol:
    raw = dict(raw)
    extra = sorted(set(raw) - set(TOP_KEYS) - set(SECTIONS))
    if extra:
        allowed = ", ".join((*TOP_KEYS, *SECTIONS))
        raise MddError(f"{source}: unknown key '{extra[0]}' at the top level. Allowed: {allowed}.")
    if "name" not in raw:
        raise MddError(f"{source}: missing key 'name'. Add name = \"...\" at the top of the file.")
    bases: tuple[str, ...] = ()
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or base not in list_protocols():
            raise unknown("base protocol", str(base), list_protocols())
        if base in _seen:
            raise MddError(f'{source}: base = "{base}" inherits from itself.')
        bases = (base, *parse_protocol(_packaged_raw(base), base, (*_seen, base)).bases)
        raw = _merge({k: v for k, v in _inherited_raw(bases).items() if k not in ("name", "base")}, raw)
    for section in SECTIONS:
        if section not in raw and section in OPTIONAL_SECTIONS:
            continue
        if section not in raw:
            raise MddError(
                f"{source}: missing section [{section}]. Add it, or inherit the rest of a packaged "
                f'protocol with base = "cpu" at the top.'
            )
        if not isinstance(raw[section], dict):
            raise MddError(f"{source}: [{section}] must be a table.")
    try:
        protocol = _PROTOCOL.validate_python({**raw, "source": source, "bases": bases})
    except ValidationError as exc:
        raise MddError(validation_message(exc, source)) from None
    if not protocol.budgets or not protocol.seeds:
        raise MddError(f"{source}: budgets and seeds need at least one value each.")
    shared = sorted(set(protocol.tuning.seeds) & set(protocol.seeds))
    if shared:
        raise MddError(
            f"{source}: [tuning] seeds {shared} are also grid seeds; tuning must never see a seed it is "
            "scored on. Pick tuning seeds outside `seeds`."
        )
    if not protocol.tuning.seeds:
        raise MddError(f"{source}: [tuning] seeds needs at least one value.")
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
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise MddError(
                f"Protocol file '{path}' is not TOML text ({exc}). Pass a protocol's .toml or a packaged "
                "name."
            ) from None
    else:
        names = list_protocols()
        if source not in names:
            raise unknown("protocol", source, names)
        text = (resources.files("mdd_bench") / "protocols" / f"{source}.toml").read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MddError(f"Protocol file '{source}' is not valid TOML: {exc}.") from None
    return parse_protocol(raw, source)


def _inherited_raw(bases: tuple[str, ...]) -> dict[str, Any]:
    """The settings a file with these bases (nearest first) inherits: each packaged file merged over the
    next one's, so `base = "paper-offline"` also gets what paper-offline takes from paper."""
    out: dict[str, Any] = {}
    for name in reversed(bases):
        out = _merge(out, _packaged_raw(name))
    return out


def _packaged_raw(name: str) -> dict[str, Any]:
    return tomllib.loads((resources.files("mdd_bench") / "protocols" / f"{name}.toml").read_text())
