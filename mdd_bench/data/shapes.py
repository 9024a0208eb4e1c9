"""`shapes`: a seeded generator of an image-caption corpus that stands in for Flickr/COCO on a CPU.

Each image is a scene of one to three objects (shape, colour, size, position) on a varied, noisy
background; each of its five captions is written from a different template family and mentions a
different subset of the scene (the whole scene, one object and where it is, a relation, an object and
the background, the count and colours), with synonyms and varied word order, as real captions do.

The corpus is written in the BLIP/Karpathy layout (`annotations/shapes_{split}.json` + PNG files) so
the same loader that reads Flickr and COCO reads it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from mdd_bench.cache import atomic_write_json
from mdd_bench.locks import artifact_lock
from mdd_bench.protocol import ShapesSizes

GENERATOR_VERSION = 1
SUPERSAMPLE = 4

SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "three-sided shape"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "star": ("star", "five-pointed star"),
}
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((220, 30, 30), ("red", "scarlet")),
    "green": ((30, 180, 40), ("green",)),
    "blue": ((40, 70, 230), ("blue",)),
    "yellow": ((240, 220, 30), ("yellow",)),
    "purple": ((150, 40, 190), ("purple", "violet")),
    "orange": ((250, 140, 20), ("orange",)),
    "cyan": ((40, 220, 220), ("cyan", "turquoise")),
    "white": ((245, 245, 245), ("white",)),
}
SIZES: dict[str, tuple[float, tuple[str, ...]]] = {
    "small": (0.20, ("small", "little", "tiny")),
    "large": (0.36, ("large", "big")),
}
BACKGROUNDS: dict[str, tuple[str, ...]] = {
    "dark": ("a dark background", "a black backdrop", "a dark surface"),
    "grey": ("a grey background", "a gray backdrop", "a plain grey surface"),
    "striped": ("a striped background", "a backdrop of stripes", "stripes"),
    "checkered": ("a checkered background", "a checkerboard", "a chequered backdrop"),
    "gradient": ("a gradient background", "a fading backdrop", "a smooth gradient"),
    "brown": ("a brown background", "a wooden-looking backdrop", "a brown surface"),
}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
PREFIXES = ("", "", "a photo of ", "an image of ", "a picture showing ", "there is ", "we see ")


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, fraction of the width
    y: float

    @property
    def where(self) -> str:
        col = "left" if self.x < 1 / 3 else "right" if self.x > 2 / 3 else "center"
        row = "top" if self.y < 1 / 3 else "bottom" if self.y > 2 / 3 else "middle"
        return f"{row} {col}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    bg_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    noise: float


def sample_scene(rng: np.random.Generator) -> Scene:
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    objects: list[SceneObject] = []
    while len(objects) < count:
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size][0] / 2
        x, y = rng.uniform(radius, 1 - radius, size=2)
        # Keep objects apart enough to be seen: a crowded scene has no readable relations.
        if any(math.hypot(x - o.x, y - o.y) < radius + SIZES[o.size][0] / 2 for o in objects):
            continue
        taken = {(o.shape, o.colour) for o in objects}
        shape, colour = str(rng.choice(list(SHAPES))), str(rng.choice(list(COLOURS)))
        if (shape, colour) in taken:
            continue
        objects.append(SceneObject(shape, colour, size, float(x), float(y)))
    background = str(rng.choice(list(BACKGROUNDS)))
    base = {
        "dark": (25, 25, 35),
        "grey": (120, 120, 125),
        "striped": (90, 95, 110),
        "checkered": (100, 90, 100),
        "gradient": (60, 80, 110),
        "brown": (115, 80, 50),
    }[background]
    jitter = rng.integers(-15, 16, size=3)
    c1 = tuple(int(np.clip(b + j, 0, 255)) for b, j in zip(base, jitter, strict=True))
    c2 = tuple(int(np.clip(v + rng.integers(30, 60), 0, 255)) for v in c1)
    return Scene(tuple(objects), background, (c1, c2), float(rng.uniform(4, 14)))  # type: ignore[arg-type]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], offset: float) -> list[tuple[float, float]]:
        pts = []
        for k in range(n * len(radii)):
            a = offset + angle + 2 * math.pi * k / (n * len(radii))
            rr = radii[k % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [r * 1.25], math.pi / 4)
    if shape == "triangle":
        return ring(3, [r * 1.25], -math.pi / 2)
    if shape == "diamond":
        return [(cx, cy - r * 1.3), (cx + r * 0.85, cy), (cx, cy + r * 1.3), (cx - r * 0.85, cy)]
    if shape == "star":
        return ring(5, [r * 1.3, r * 0.55], -math.pi / 2)
    if shape == "cross":
        a, b = r * 1.1, r * 0.38
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b),
                (cx + a, cy + b), (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a),
                (cx - b, cy + b), (cx - a, cy + b), (cx - a, cy - b), (cx - b, cy - b)]  # fmt: skip
    raise ValueError(shape)


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    c1, c2 = (np.array(c, dtype=np.float32) for c in scene.bg_colours)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if scene.background == "striped":
        period = rng.uniform(0.12, 0.25)
        mask = ((xx + yy * rng.uniform(-1, 1)) / period % 1.0) < 0.5
    elif scene.background == "checkered":
        period = rng.uniform(0.15, 0.3)
        mask = ((xx // period + yy // period) % 2) == 0
    elif scene.background == "gradient":
        t = xx if rng.random() < 0.5 else yy
        return (c1 * (1 - t[..., None]) + c2 * t[..., None]).astype(np.float32)
    else:
        mask = np.zeros((size, size), dtype=bool)
    return np.where(mask[..., None], c2, c1).astype(np.float32)


def render(scene: Scene, resolution: int, rng: np.random.Generator) -> Image.Image:
    size = resolution * SUPERSAMPLE
    canvas = Image.fromarray(_background(scene, size, rng).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        rgb = np.array(COLOURS[obj.colour][0]) + rng.integers(-20, 21, size=3)
        fill = tuple(int(v) for v in np.clip(rgb, 0, 255))
        r = SIZES[obj.size][0] / 2 * size * rng.uniform(0.9, 1.1)
        cx, cy = obj.x * size, obj.y * size
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(obj.shape, cx, cy, r, rng.uniform(-0.2, 0.2)), fill=fill)
    small = canvas.resize((resolution, resolution), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float32)
    pixels = pixels + rng.normal(0, scene.noise, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------- captions


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _noun(obj: SceneObject, rng: np.random.Generator, size: bool) -> str:
    shape = _pick(rng, SHAPES[obj.shape])
    colour = _pick(rng, COLOURS[obj.colour][1])
    adjective = f"{_pick(rng, SIZES[obj.size][1])} " if size else ""
    form = rng.integers(3)
    if form == 0 or size:
        return f"a {adjective}{colour} {shape}"
    if form == 1:
        return f"a {shape} that is {colour}"
    return f"a {colour}-colored {shape}"


def _where(obj: SceneObject, rng: np.random.Generator) -> str:
    row, col = obj.where.split()
    if row == "middle" and col == "center":
        return _pick(rng, ("in the center", "in the middle", "at the centre"))
    if row == "middle":
        return _pick(rng, (f"on the {col}", f"at the {col} side", f"on the {col} side"))
    if col == "center":
        return _pick(rng, (f"at the {row}", f"near the {row}", f"in the {row} part"))
    return _pick(rng, (f"in the {row} {col}", f"in the {row} {col} corner", f"at the {row} {col}"))


def _relation(a: SceneObject, b: SceneObject) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _background_phrase(scene: Scene, rng: np.random.Generator) -> str:
    return _pick(rng, ("on", "against", "over")) + " " + _pick(rng, BACKGROUNDS[scene.background])


# Every image gets this many captions, so the train split's pairs are known before it is generated.
CAPTIONS_PER_IMAGE = 5


def write_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five captions, each from a different family, so each mentions a different subset of the scene."""
    objs = list(scene.objects)
    order = [objs[i] for i in rng.permutation(len(objs))]
    one = order[0]
    n = len(objs)
    whole = _join([_noun(o, rng, size=True) for o in order])
    if rng.random() < 0.5:
        whole += " " + _background_phrase(scene, rng)
    located = f"{_noun(one, rng, size=False)} {_where(one, rng)}"
    if n >= 2:
        a, b = order[0], order[1]
        related = f"{_noun(a, rng, size=False)} {_relation(a, b)} {_noun(b, rng, size=False)}"
    else:
        related = f"{_noun(one, rng, size=True)} on its own"
    on_bg = f"{_noun(order[-1], rng, size=bool(rng.integers(2)))} {_background_phrase(scene, rng)}"
    colours = _join([_pick(rng, COLOURS[o.colour][1]) for o in order])
    noun = "shape" if n == 1 else _pick(rng, ("shapes", "objects", "things"))
    if rng.random() < 0.5:
        counted = f"{COUNT_WORDS[n]} {noun}: {colours}"
    else:
        counted = f"{COUNT_WORDS[n]} {'' if n == 1 else 'colored '}{noun}, {colours}"
    captions = [whole, located, related, on_bg, counted]
    return [_grammar(_pick(rng, PREFIXES) + captions[i]) for i in rng.permutation(CAPTIONS_PER_IMAGE)]


def _grammar(text: str) -> str:
    text = re.sub(r"\ba ([aeiou])", r"an \1", text.strip())
    return re.sub(r"^there is (two|three) ", r"there are \1 ", text)


# ---------------------------------------------------------------- corpus


@dataclass(frozen=True)
class ShapesConfig:
    train: int
    val: int
    test: int
    seed: int
    resolution: int
    version: int = GENERATOR_VERSION

    @classmethod
    def from_sizes(cls, sizes: ShapesSizes, resolution: int) -> ShapesConfig:
        return cls(sizes.train, sizes.val, sizes.test, sizes.seed, resolution)

    @property
    def folder_name(self) -> str:
        return f"n{self.train}-{self.val}-{self.test}-r{self.resolution}-s{self.seed}-v{self.version}"


SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


def shapes_root(data_root: Path, config: ShapesConfig) -> Path:
    return Path(data_root) / "shapes" / config.folder_name


def is_prepared(root: Path, config: ShapesConfig) -> bool:
    meta = root / "shapes_meta.json"
    return meta.exists() and json.loads(meta.read_text()) == asdict(config)


def generate_shapes(root: Path, config: ShapesConfig, progress: bool = True) -> Path:
    """Write the corpus under `root`; the meta file is written last, so a half-written corpus is redone."""
    if root.exists():
        # The meta file goes first: a kill during the removal must not leave it beside half the images.
        (root / "shapes_meta.json").unlink(missing_ok=True)
        shutil.rmtree(root)
    (root / "annotations").mkdir(parents=True)
    total = config.train + config.val + config.test
    bar = tqdm(total=total, desc="shapes: generating", unit="img", disable=not progress)
    for split, offset in SPLIT_OFFSETS.items():
        count = getattr(config, split)
        rng = np.random.default_rng([config.seed, offset, GENERATOR_VERSION])
        folder = root / "images" / split
        folder.mkdir(parents=True)
        entries: list[dict] = []
        for i in range(count):
            scene = sample_scene(rng)
            rel = f"images/{split}/{split}_{i:06d}.png"
            render(scene, config.resolution, rng).save(root / rel, compress_level=1)
            captions = write_captions(scene, rng)
            if split == "train":
                entries += [{"image": rel, "caption": c, "image_id": f"{i}"} for c in captions]
            else:
                entries.append({"image": rel, "caption": captions})
            bar.update(1)
        atomic_write_json(root / "annotations" / f"shapes_{split}.json", entries)
    bar.close()
    atomic_write_json(root / "shapes_meta.json", asdict(config))
    return root


def ensure_shapes(data_root: Path, config: ShapesConfig, progress: bool = True) -> tuple[Path, bool]:
    """(root, generated): generate the corpus unless an identical one is already on disk."""
    root = shapes_root(data_root, config)
    if is_prepared(root, config):
        return root, False
    with artifact_lock(root):  # two runs starting on a fresh machine generate it once
        if is_prepared(root, config):
            return root, False
        return generate_shapes(root, config, progress), True
