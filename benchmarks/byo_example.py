"""A user's model as people have it today, made from Debian's Fashion-MNIST.

`make_example` writes what a new user brings: a 10-class folder of 40x40 RGB
PNGs (`train/`, `test/`) and a `keras.applications.MobileNetV2(alpha=0.35,
weights=None)` backbone nested in a Functional transfer model whose first
layer, `Rescaling(1/127.5, offset=-1)`, expects raw 0..255 pixels, saved by
Keras 3 (`model_keras3.keras`) and by tf-keras (`model_tf_keras.keras`, the
same weights). The colours are drawn per image from a seeded generator that
never sees the label, so colour says nothing about the class.

`scripts/make_byo_example.py` is its command line; `invoke benchmark-byo`
builds it and runs `build-edge` on both files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    """What `make_example` makes. The defaults are the ones the README's numbers come from.

    Args:
        train: Training images (a seeded, class-balanced draw from the
            60,000). Defaults to 10000.
        test: Test images (from the 10,000). Defaults to 2000.
        size: Image side in pixels. Defaults to 40.
        alpha: MobileNetV2 width. Defaults to 0.35.
        epochs: Training epochs. Defaults to 15.
        seed: Seeds the draw, the colours and training. Defaults to 0.
        min_accuracy: The trained Keras 3 model's test top-1 must reach this,
            or `make_example` raises. Defaults to 0.78.
    """

    train: int = 10000
    test: int = 2000
    size: int = 40
    alpha: float = 0.35
    epochs: int = 15
    seed: int = 0
    min_accuracy: float = 0.78


def colourise(gray: np.ndarray, size: int, rng) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, size, size, 3): a random foreground and background colour per image."""
    from PIL import Image

    n = len(gray)
    fg = rng.uniform(80, 255, (n, 1, 1, 3))
    bg = rng.uniform(0, 90, (n, 1, 1, 3))
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        g = np.asarray(Image.fromarray(gray[i]).resize((size, size), Image.BILINEAR), dtype=np.float64)[..., None] / 255
        out[i] = np.clip(bg[i] * (1 - g) + fg[i] * g, 0, 255).round().astype(np.uint8)
    return out


def _draw(y, n, rng):
    per = n // 10
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(10)]))


def write_folders(out: Path, config: ExampleConfig):
    """Writes `out/images/{train,test}/<class>/*.png`; returns (x_test, y_test) as written."""
    from PIL import Image

    from edgecompress.data.images import FASHION_MNIST_CLASSES
    from edgecompress.data.loading import load_dataset

    full = load_dataset("fashion-mnist")
    rng = np.random.default_rng(config.seed)
    splits = {}
    for split, x, y, n in (("train", full.x_train, full.y_train, config.train),
                           ("test", full.x_test, full.y_test, config.test)):
        idx = _draw(y, n, rng)
        pixels = colourise(x[idx, ..., 0], config.size, rng)
        for c, name in enumerate(FASHION_MNIST_CLASSES):
            d = out / "images" / split / f"{c}_{name.replace('/', '_').replace(' ', '_').lower()}"
            d.mkdir(parents=True, exist_ok=True)
        names = sorted(p.name for p in (out / "images" / split).iterdir())
        for i, (img, label) in enumerate(zip(pixels, y[idx])):
            Image.fromarray(img, "RGB").save(out / "images" / split / names[label] / f"{i:05d}.png")
        splits[split] = (pixels, y[idx])
    return splits


def build_model(lib, config: ExampleConfig):
    """The transfer model in `lib` (the `keras` or `tf_keras` module): Rescaling, nested MobileNetV2, head."""
    shape = (config.size, config.size, 3)
    inp = lib.Input(shape, name="image")
    x = lib.layers.Rescaling(1 / 127.5, offset=-1, name="to_symmetric")(inp)
    backbone = lib.applications.MobileNetV2(input_shape=shape, alpha=config.alpha, include_top=False, weights=None)
    for layer in backbone.layers:
        # keras.applications sets 0.999, made for fine-tuning ImageNet weights; trained from scratch for a few
        # thousand steps the moving averages would not settle (10% top-1 at inference). 0.99 is Keras's default.
        if isinstance(layer, lib.layers.BatchNormalization):
            layer.momentum = 0.99
    x = backbone(x)
    x = lib.layers.GlobalAveragePooling2D(name="pool")(x)
    x = lib.layers.Dropout(0.2, name="head_dropout")(x)
    out = lib.layers.Dense(10, activation="softmax", name="classes")(x)
    return lib.Model(inp, out, name="mnv2_transfer")


def make_example(out, config: ExampleConfig | None = None) -> dict:
    """Writes the image folders and both model files under `out`; returns what it measured."""
    import keras

    import edgecompress.models.backend  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow, for tf_keras below
    import tf_keras

    config = config or ExampleConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    splits = write_folders(out, config)
    (xt, yt), (xs, ys) = splits["train"], splits["test"]
    logger.info("Wrote %d training and %d test images (%dx%d RGB) in %.0f s", len(yt), len(ys), config.size,
                config.size, time.time() - t0)
    keras.utils.set_random_seed(config.seed)
    model = build_model(keras, config)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t1 = time.time()
    model.fit(xt.astype("float32"), yt, batch_size=64, epochs=config.epochs, verbose=2, shuffle=True)
    train_seconds = time.time() - t1
    acc = float((model.predict(xs.astype("float32"), verbose=0).argmax(-1) == ys).mean())
    if acc < config.min_accuracy:
        raise EdgeCompressError(f"The example model reached {100 * acc:.2f}% top-1, below its pinned minimum "
                                f"{100 * config.min_accuracy:.0f}%: the training recipe or the data changed.")
    model.save(out / "model_keras3.keras")
    twin = build_model(tf_keras, config)
    twin.set_weights(model.get_weights())
    diff = float(np.abs(twin.predict(xs[:64].astype("float32"), verbose=0) -
                        model.predict(xs[:64].astype("float32"), verbose=0)).max())
    if diff > 1e-4:
        raise EdgeCompressError(f"The tf-keras twin differs from the Keras 3 model by {diff:.2e}.")
    twin.save(out / "model_tf_keras.keras")
    summary = {"config": dataclasses.asdict(config), "keras3_top1": acc, "params": int(model.count_params()),
               "train_seconds": round(train_seconds, 1), "twin_max_abs_diff": diff,
               "files": ["model_keras3.keras", "model_tf_keras.keras", "images/"]}
    (out / "example.json").write_text(json.dumps(summary, indent=2))
    logger.info("Example model: %d parameters, test top-1 %.2f%% after %d epochs (%.0f s)", summary["params"],
                100 * acc, config.epochs, train_seconds)
    return summary


def benchmark(out="build/byo", *, search: bool = False, max_accuracy_drop: float | None = None,
              budget_minutes: float = 30.0) -> list:
    """Makes the example (once) and runs `build_edge` on both model files with no other flags.

    With `search`, runs `--search` with `max_accuracy_drop` instead of the
    default recipe. Returns one row per file: its format, the seconds the
    build took, and the int8 (or selected) file's gzip ratio to the model's
    own float32 `.tflite` and its top-1 against the Keras model's.
    """
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    out = Path(out)
    if not (out / "model_keras3.keras").exists() or not (out / "model_tf_keras.keras").exists():
        make_example(out)
    rows = []
    for fmt in ("keras3", "tf_keras"):
        dest = out / (f"search_{fmt}" if search else f"out_{fmt}")
        t0 = time.time()
        report = build_edge(BuildOptions(model=str(out / f"model_{fmt}.keras"), data=str(out / "images"),
                                         out_dir=str(dest), search="default" if search else None,
                                         max_accuracy_drop=max_accuracy_drop, budget_minutes=budget_minutes))
        rows.append(summarize(report, fmt, round(time.time() - t0, 1)))
    return rows


def summarize(report: dict, fmt: str, seconds: float) -> dict:
    """The row `benchmark` reports for one build: int8 (or selected) against the float32 teacher file."""
    arts = {a["name"]: a for a in report["artifacts"]}
    base = arts[report["baseline"]]
    keras_top1 = report["stages"][0]["metrics"]["accuracy"]
    pick = arts.get(report.get("selected") or "int8") or arts["int8"]
    return {"format": fmt, "seconds": seconds, "artifact": pick["name"], "gzip_bytes": pick["gzip_bytes"],
            "baseline_gzip_bytes": base["gzip_bytes"], "x_smaller_gzip": round(base["gzip_bytes"] / pick["gzip_bytes"], 2),
            "top1": pick["accuracy"], "keras_top1": keras_top1,
            "delta_points": round(100 * (pick["accuracy"] - keras_top1), 2),
            # the closed loop's judging images: the file against the model's own float32 file there
            "judged_top1": pick.get("val_accuracy"), "baseline_judged_top1": base.get("val_accuracy"),
            "judged_count": report["dataset"].get("judged_count"), "reported_count": report["dataset"]["count"]}
