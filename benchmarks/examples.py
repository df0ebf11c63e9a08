"""Models this project was not tuned on, made offline and seeded: what `invoke benchmark-byo` measures.

Each example writes what a new user brings, an image folder and a trained
Keras 3 model file, built differently from the MobileNetV2 example
(`byo_example.py`) and from each other:

- `mnv3-shapes`: `keras.applications.MobileNetV3Small(alpha=0.75,
  include_preprocessing=True, weights=None)` (its `Rescaling` sits inside
  the nested backbone), a softmax head, 8 classes of 64x64 RGB drawings of
  shapes (random colours, sizes, positions, rotations, clutter and noise),
  `train/` and `test/` only: the closed loop judges on half the test split.
- `resnet-letters`: a ResNet-style network whose head is a `Dense(10)` with
  no softmax, trained with `from_logits=True`, behind a `Normalization`
  layer adapted on raw pixels, on 10 letters (A-J) rendered at 32x32 in
  Debian's DejaVu and Liberation fonts (`fonts-dejavu-core`,
  `fonts-liberation`), `train/`, `val/` and `test/` folders.
- `sensor-people`: grouped data (`benchmarks/sensors.py`): a 1D CNN on
  overlapping windows of six activities, each person a group, with a
  `fresh.npz` of people the build never sees.

The generators are seeded numpy and PIL: the same config gives the same
images. `EXAMPLES` is the table `invoke benchmark-byo --example NAME` reads
(`mnv2` is `byo_example`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon")
LETTERS = tuple("ABCDEFGHIJ")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """What one example makes. Defaults are each example's own (see `EXAMPLES`).

    Args:
        train: Training images. Defaults to 4000.
        val: Validation images (a `val/` folder), 0 for none. Defaults to 0.
        test: Test images. Defaults to 1600.
        size: Image side in pixels. Defaults to 64.
        epochs: Training epochs. Defaults to 30.
        seed: Seeds the images and training. Defaults to 0.
        min_accuracy: The trained model's test top-1 must reach this, or
            the maker raises. Defaults to 0.5.
    """

    train: int = 4000
    val: int = 0
    test: int = 1600
    size: int = 64
    epochs: int = 30
    seed: int = 0
    min_accuracy: float = 0.5


# ---------------------------------------------------------------- images

def colours(rng, min_contrast: int = 60):
    """A background and a foreground colour at least `min_contrast` apart in mean brightness, drawn without
    the label."""
    while True:
        bg, fg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if abs(int(fg.mean()) - int(bg.mean())) >= min_contrast:
            return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


def polygon(cx, cy, r, n, angle, star=False):
    pts = []
    for i in range(n * (2 if star else 1)):
        rr = r * (0.45 if star and i % 2 else 1.0)
        a = angle + 2 * math.pi * i / (n * (2 if star else 1))
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_shape(label: int, size: int, rng) -> np.ndarray:
    """One `SHAPES[label]` drawing: (size, size, 3) uint8 with clutter lines and pixel noise."""
    from PIL import Image, ImageDraw

    bg, fg = colours(rng)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 4)):  # clutter: lines in a third colour
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=c, width=int(rng.integers(1, 3)))
    r = rng.uniform(0.18, 0.34) * size
    cx, cy = rng.uniform(r + 2, size - r - 2, 2)
    angle = rng.uniform(0, 2 * math.pi)
    w = max(2, int(r / 3))
    name = SHAPES[label]
    if name == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=w)
    elif name == "square":
        d.polygon(polygon(cx, cy, r, 4, angle), fill=fg)
    elif name == "diamond":
        d.polygon([(cx, cy - r), (cx + 0.55 * r, cy), (cx, cy + r), (cx - 0.55 * r, cy)], fill=fg)
    elif name == "triangle":
        d.polygon(polygon(cx, cy, r, 3, angle), fill=fg)
    elif name == "hexagon":
        d.polygon(polygon(cx, cy, r, 6, angle), fill=fg)
    elif name == "star":
        d.polygon(polygon(cx, cy, r, 5, angle, star=True), fill=fg)
    elif name == "cross":
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            d.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=fg, width=w)
    x = np.asarray(img, np.float64) + rng.normal(0, 12, (size, size, 3))
    return np.clip(x, 0, 255).round().astype(np.uint8)


def fonts() -> list[Path]:
    """The TrueType fonts the letters are rendered in (Debian's DejaVu and Liberation), sorted."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf"))
    if not found:
        raise EdgeCompressError("No fonts under /usr/share/fonts/truetype/{dejavu,liberation}: install them with "
                                "`apt-get install fonts-dejavu-core fonts-liberation` (scripts/install-system-deps.sh).")
    return found


def draw_letter(label: int, size: int, rng, font_files) -> np.ndarray:
    """One `LETTERS[label]`, in a random font, size, rotation and position: (size, size, 3) uint8."""
    from PIL import Image, ImageDraw, ImageFont

    bg, fg = colours(rng)
    big = size * 2
    canvas = Image.new("L", (big, big), 0)
    font = ImageFont.truetype(str(font_files[rng.integers(len(font_files))]), int(rng.uniform(0.45, 0.75) * big))
    d = ImageDraw.Draw(canvas)
    d.text((big / 2, big / 2), LETTERS[label], fill=255, font=font, anchor="mm")
    for _ in range(rng.integers(0, 2)):  # a stroke across the letter, at times, in its own colour
        d.line([tuple(rng.uniform(0, big, 2)), tuple(rng.uniform(0, big, 2))], fill=255, width=int(rng.integers(1, 3)))
    canvas = canvas.rotate(rng.uniform(-25, 25), resample=Image.BILINEAR)
    shift = rng.uniform(-0.15, 0.15, 2) * big
    canvas = canvas.transform(canvas.size, Image.AFFINE, (1, 0, shift[0], 0, 1, shift[1]), resample=Image.BILINEAR)
    mask = np.asarray(canvas.resize((size, size), Image.BILINEAR), np.float64)[..., None] / 255
    x = np.array(bg, np.float64) * (1 - mask) + np.array(fg, np.float64) * mask + rng.normal(0, 14, (size, size, 3))
    return np.clip(x, 0, 255).round().astype(np.uint8)


def write_split(folder: Path, classes, draw, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Writes `n` class-balanced images as `folder/<i>_<class>/<k>.png`; returns them (x, y)."""
    from PIL import Image

    y = np.arange(n) % len(classes)
    rng.shuffle(y)
    names = [f"{i}_{c.lower()}" for i, c in enumerate(classes)]
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    x = np.stack([draw(int(label), rng) for label in y])
    for k, (img, label) in enumerate(zip(x, y)):
        Image.fromarray(img, "RGB").save(folder / names[label] / f"{k:05d}.png")
    return x, y


# ---------------------------------------------------------------- models

def mobilenet_v3_model(keras, size: int, classes: int):
    """MobileNetV3Small(alpha=0.75) with its own preprocessing, nested in a Functional model; softmax head."""
    inp = keras.Input((size, size, 3), name="image")
    backbone = keras.applications.MobileNetV3Small(input_shape=(size, size, 3), alpha=0.75, include_top=False,
                                                   weights=None, include_preprocessing=True)
    for layer in backbone.layers:
        # keras.applications sets 0.999, made for fine-tuning ImageNet weights: trained from scratch for 30
        # epochs on 4,000 images its moving statistics had not settled (12.50% test top-1, chance, measured).
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inp))
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax", name="classes")(x), name="mnv3_shapes")


def resnet_logits_model(keras, size: int, classes: int, x_adapt):
    """A ResNet-style net (three stages of two residual blocks) behind `Normalization` adapted on raw pixels,
    ending in a `Dense(classes)` with no activation: logits."""
    norm = keras.layers.Normalization(name="normalize")
    norm.adapt(x_adapt.astype("float32"))
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(24, 3, padding="same", use_bias=False)(norm(inp))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for filters, stride in ((24, 1), (48, 2), (96, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            y = keras.layers.Conv2D(filters, 3, strides=s, padding="same", use_bias=False)(x)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
            y = keras.layers.BatchNormalization()(keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
            if s != 1 or x.shape[-1] != filters:
                x = keras.layers.BatchNormalization()(keras.layers.Conv2D(filters, 1, strides=s, use_bias=False)(x))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(classes, name="logits")(x), name="resnet_letters")


# ---------------------------------------------------------------- the makers

def _train(model, x, y, xs, ys, config, loss, lr):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
    t0 = time.time()
    model.fit(x.astype("float32"), y, batch_size=64, epochs=config.epochs, verbose=2, shuffle=True)
    seconds = time.time() - t0
    acc = float((model.predict(xs.astype("float32"), verbose=0).argmax(-1) == ys).mean())
    if acc < config.min_accuracy:
        raise EdgeCompressError(f"The example model {model.name} reached {100 * acc:.2f}% top-1, below its pinned "
                                f"minimum {100 * config.min_accuracy:.0f}%: the training recipe or the data changed.")
    return acc, seconds


def _make(out, config, classes, draw, build, loss, lr):
    import keras

    out = Path(out)
    rng = np.random.default_rng(config.seed)
    t0 = time.time()
    splits = {}
    for split, n in (("train", config.train), ("val", config.val), ("test", config.test)):
        if n:
            splits[split] = write_split(out / "images" / split, classes, draw, n, rng)
    logger.info("Wrote %s images (%dx%d RGB) in %.0f s", ", ".join(f"{len(v[1])} {k}" for k, v in splits.items()),
                config.size, config.size, time.time() - t0)
    keras.utils.set_random_seed(config.seed)
    model = build(keras, splits["train"][0])
    acc, seconds = _train(model, *splits["train"], *splits["test"], config, loss, lr)
    model.save(out / "model.keras")
    summary = {"config": dataclasses.asdict(config), "keras3_top1": acc, "params": int(model.count_params()),
               "train_seconds": round(seconds, 1), "files": ["model.keras", "images/"]}
    (out / "example.json").write_text(json.dumps(summary, indent=2))
    logger.info("Example %s: %d parameters, test top-1 %.2f%% after %d epochs (%.0f s)", model.name,
                summary["params"], 100 * acc, config.epochs, seconds)
    return summary


def make_shapes(out, config: SyntheticConfig | None = None) -> dict:
    """`mnv3-shapes`: 8 shapes at 64x64, MobileNetV3Small(0.75) with its own Rescaling, softmax head."""
    config = config or EXAMPLES["mnv3-shapes"].config
    return _make(out, config, SHAPES, lambda label, rng: draw_shape(label, config.size, rng),
                 lambda keras, x: mobilenet_v3_model(keras, config.size, len(SHAPES)),
                 "sparse_categorical_crossentropy", 2e-3)


def make_letters(out, config: SyntheticConfig | None = None) -> dict:
    """`resnet-letters`: 10 letters at 32x32 with `val/`, a ResNet-style net with Normalization and logits."""
    import keras

    config = config or EXAMPLES["resnet-letters"].config
    font_files = fonts()
    return _make(out, config, LETTERS, lambda label, rng: draw_letter(label, config.size, rng, font_files),
                 lambda k, x: resnet_logits_model(k, config.size, len(LETTERS), x),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True), 2e-3)


@dataclasses.dataclass(frozen=True)
class Example:
    """One row of `EXAMPLES`: how to make it, its default config, and what `build-edge` is given."""

    make: object
    config: object
    model: str
    data: str = "images"


def _mnv2(out, config=None):
    from benchmarks.byo_example import make_example

    return make_example(out, config)


def _sensors(out, config=None):
    from benchmarks.sensors import make_sensors

    return make_sensors(out, config)


def _sensor_config():
    from benchmarks.sensors import SensorConfig

    return SensorConfig()


EXAMPLES = {
    "mnv2": Example(_mnv2, None, "model_keras3.keras"),
    "sensor-people": Example(_sensors, _sensor_config(), "model.keras", "data.npz"),
    "mnv3-shapes": Example(make_shapes, SyntheticConfig(train=4000, test=1600, size=64, epochs=25,
                                                        min_accuracy=0.6), "model.keras"),
    "resnet-letters": Example(make_letters, SyntheticConfig(train=3000, val=1000, test=1000, size=32, epochs=12,
                                                            min_accuracy=0.6), "model.keras"),
}


def benchmark(name: str, out=None) -> dict:
    """Makes example `name` once under `out` (default `build/byo-<name>`), then runs `build_edge` on it with
    `--model` and `--data` and no other flag (the closed loop); returns its row (see `byo_example.summarize`)."""
    from benchmarks.byo_example import summarize
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    if name not in EXAMPLES:
        raise EdgeCompressError(f"Received an invalid value for `example`: {name!r}. Expected one of "
                                f"{sorted(EXAMPLES)}.")
    ex = EXAMPLES[name]
    out = Path(out or f"build/byo-{name}")
    if not (out / ex.model).exists():
        ex.make(out, ex.config)
    t0 = time.time()
    report = build_edge(BuildOptions(model=str(out / ex.model), data=str(out / ex.data), out_dir=str(out / "out")))
    return {"example": name, "folder": str(out), **summarize(report, "keras3", round(time.time() - t0, 1))}
