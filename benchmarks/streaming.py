"""Data that does not fit in memory: peak resident memory of `build-edge` as the image count grows.

`make_images` writes a seeded folder of JPEGs (one sub-folder per class: stripes at the class's angle,
random colours, phase, frequency and noise), `make_model` a small Keras 3 CNN trained on images from the
same generator (another seed, in memory), and `measure` runs `invoke build-edge --model --data --recipe`
in a child process and reads its peak RSS (`getrusage`'s `ru_maxrss` of the child). Above
`data.ondisk.stream_bytes()` of decoded pixels the images are decoded once into the data cache and every
stage reads the rows it needs (`data.ondisk`), so the peak should not follow the count.

`invoke benchmark-stream --count 50000` is its command line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# One epoch of pruning to half the weights, then float32 and int8: every path that touches the data
# (training with a validation split, the Keras model's top-1, calibration, the interpreter's top-1).
RECIPE = Path(__file__).with_name("stream-recipe.json")  # prune to 50% for one epoch; float32 and int8


def stripes(rng, n: int, size: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` seeded (size, size, 3) uint8 images and their labels: stripes at angle 180 * label / classes."""
    y = rng.integers(0, classes, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a = np.pi * (y[i] + rng.uniform(-0.15, 0.15)) / classes
        wave = np.sin(2 * np.pi * rng.uniform(4, 9) * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 2 * np.pi))
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        img = np.where(wave[..., None] > 0, fg, bg) + rng.normal(0, 20, (size, size, 3))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out, y


def make_images(root, count: int, *, size: int = 224, classes: int = 4, seed: int = 0) -> Path:
    """Writes `count` JPEGs under `root/<class>/`; kept when `root/made.json` says the same was made."""
    from PIL import Image

    root = Path(root)
    made = {"count": count, "size": size, "classes": classes, "seed": seed}
    if (root / "made.json").exists() and json.loads((root / "made.json").read_text()) == made:
        return root
    rng = np.random.default_rng(seed)
    for k in range(classes):
        (root / f"class{k}").mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for start in range(0, count, 500):
        x, y = stripes(rng, min(500, count - start), size, classes)
        for j, (img, label) in enumerate(zip(x, y)):
            Image.fromarray(img).save(root / f"class{label}" / f"{start + j:06d}.jpg", quality=90)
        if start and start % 5000 == 0:
            logger.info("Wrote %d of %d images (%.0f s)", start, count, time.time() - t0)
    (root / "made.json").write_text(json.dumps(made))
    return root


def make_model(path, *, size: int = 224, classes: int = 4, seed: int = 1, train: int = 1500, epochs: int = 6) -> Path:
    """A Keras 3 CNN (strided convolutions, global pooling, softmax) that expects 0..255 pixels, trained on
    `train` images of the generator drawn with `seed`; saved to `path` once."""
    path = Path(path)
    if path.exists():
        return path
    import keras

    keras.utils.set_random_seed(seed)
    x, y = stripes(np.random.default_rng(seed), train, size, classes)
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Rescaling(1 / 255.0)(inputs)
    for filters in (16, 32, 64):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(h), name="stripes_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, validation_split=0.2, verbose=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def measure(count: int, out=None, *, size: int = 224, stream_bytes: int | None = None) -> dict:
    """Makes `count` images and the model under `out` (default `build/stream-<count>`), runs `build-edge` on
    them with `RECIPE` in a child process, and returns its exit code, wall time and peak RSS.

    Args:
        count: Images in the folder (the loader keeps 80% to train on, stratified).
        out: Where the images, the model and the build go.
        size: Image side. Defaults to 224.
        stream_bytes: `EDGECOMPRESS_STREAM_BYTES` for the child (None: the default, 256 MiB).
    """
    from edgecompress.data import ondisk

    out = Path(out or f"build/stream-{count}")
    images = make_images(out / "images", count, size=size)
    model = make_model(out.parent / f"stream-model-{size}.keras", size=size)
    recipe = out / "recipe.json"
    recipe.write_text(RECIPE.read_text())
    env = dict(os.environ)
    if stream_bytes is not None:
        env[ondisk.STREAM_ENV] = str(int(stream_bytes))
    cmd = [sys.executable, "-m", "invoke", "build-edge", "--model", str(model), "--data", str(images),
           "--recipe", str(recipe), "--out", str(out / "out"), "--runs", "20"]
    t0 = time.time()
    log = out / "build.log"
    with open(log, "w") as f:  # wait4: this child's own rusage, not the largest of every child so far
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.time() - t0
    text = log.read_text()
    report = out / "out" / "report.json"
    arts = json.loads(report.read_text())["artifacts"] if proc.returncode == 0 and report.exists() else []
    row = {"count": count, "size": size, "returncode": proc.returncode, "seconds": round(seconds, 1),
           "peak_rss_bytes": int(usage.ru_maxrss) * 1024,  # KiB on Linux
           "decoded_bytes": count * size * size * 3, "streamed": "decoded images of" in text or "Decoding " in text,
           "top1": {a["name"]: a.get("accuracy") for a in arts}, "log": str(log)}
    (out / "stream.json").write_text(json.dumps(row, indent=2))
    return row
