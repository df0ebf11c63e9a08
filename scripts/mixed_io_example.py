#!/usr/bin/env python
"""A tf-keras (Keras 2) `.h5` model of two inputs and two outputs, made seeded, then built with a recipe of every
training stage (distill, prune, cluster, factorize) and int8; prints each file's metric on each output.

    python scripts/mixed_io_example.py build/mixed-io

Inputs `tab` (8 numbers) and `seq` (a (6, 2) sequence, through a Conv1D); outputs `cls` (3 classes, a logits
head) and `val` (2 values). The data is an `.npz` of `x_train/<input>` and `y_train/<output>` arrays.
"""

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402

from edgecompress.builder.options import BuildOptions  # noqa: E402
from edgecompress.lite.scores import r2_score  # noqa: E402
from edgecompress.lite.tasks import says_each  # noqa: E402
from edgecompress.models.backend import keras as k  # noqa: E402
from edgecompress.pipeline import build_edge  # noqa: E402


def data(n, seed):
    r = np.random.default_rng(seed)
    a, b = r.normal(0, 1, (n, 8)).astype("float32"), r.normal(0, 1, (n, 6, 2)).astype("float32")
    y = (a[:, 0] + b[:, 0, 0] > 0).astype(int) + (a[:, 1] > 0.5).astype(int)
    v = np.stack([a[:, 2] * 2 + b[:, 1, 1], a[:, 3] - b[:, 2, 0]], 1).astype("float32")
    return a, b, y, v


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k.utils.set_random_seed(0)
    ia, ib = k.Input((8,), name="tab"), k.Input((6, 2), name="seq")
    x = k.layers.Concatenate()([k.layers.Dense(32, activation="relu")(ia),
                                k.layers.Flatten()(k.layers.Conv1D(16, 3, activation="relu")(ib))])
    x = k.layers.Dense(32, activation="relu")(x)
    model = k.Model([ia, ib], [k.layers.Dense(3, name="cls")(x), k.layers.Dense(2, name="val")(x)])
    model.compile("adam", [k.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"])
    (a1, b1, y1, v1), (a2, b2, y2, v2) = data(2000, 1), data(500, 2)
    model.fit([a1, b1], [y1, v1], epochs=30, verbose=0, batch_size=32)
    pc, pv = model.predict([a2, b2], verbose=0)
    print(f"tf-keras: cls top-1 {100 * (pc.argmax(1) == y2).mean():.2f}%, val R² {r2_score(pv, v2):.4f}")
    model.save(out / "mixed.h5")
    np.savez(out / "mixed.npz", **{"x_train/tab": a1, "x_train/seq": b1, "y_train/cls": y1, "y_train/val": v1,
                                   "x_test/tab": a2, "x_test/seq": b2, "y_test/cls": y2, "y_test/val": v2})
    (out / "recipe.json").write_text(json.dumps({"name": "every-stage", "stages": [
        {"stage": "distill", "width": 0.5, "epochs": 8, "baseline": False},
        {"stage": "prune", "final_sparsity": 0.5, "epochs": 2}, {"stage": "cluster", "number_of_clusters": 16, "epochs": 1},
        {"stage": "factorize", "ratio": 0.5}], "quantize": ["float32", "int8"]}))
    report = build_edge(BuildOptions(model=str(out / "mixed.h5"), data=str(out / "mixed.npz"),
                                     recipe=str(out / "recipe.json"), out_dir=str(out / "out"), verbose=0))
    for a in report["artifacts"]:
        print(f"{a['name']}: {a['size_bytes']} bytes ({a['gzip_bytes']} gzipped), {says_each(a['outputs'])}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/mixed-io")
