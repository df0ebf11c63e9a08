"""A model of two outputs and its data, made offline and seeded: what `scripts/several_outputs_example.py`
builds and `tests/test_several_outputs.py` tests on.

16x16 RGB images of noise with one bright 4x4 square: its colour channel is the class (`cls`, 3 classes), its
centre over 16 two values (`box`). A Keras 3 convnet with its own `Rescaling` ends in two heads, a softmax
`Dense(3)` and a linear `Dense(2)`, trained on both. The data is an `.npz` that labels each output:
`x_train`, `y_train/cls`, `y_train/box`, `x_test`, `y_test/cls`, `y_test/box`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def arrays(n: int, seed: int):
    """(images (n, 16, 16, 3) uint8, class ids (n,), box centres (n, 2) float32 in [0.19, 0.75])."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    img = rng.integers(0, 90, (n, 16, 16, 3)).astype(np.uint8)
    pos = rng.uniform(3, 12, (n, 2))
    for i in range(n):
        r, c = int(pos[i, 0]), int(pos[i, 1])
        img[i, r - 2:r + 2, c - 2:c + 2, y[i]] = 250
    return img, y, (pos / 16).astype(np.float32)


def write_data(path, n_train: int = 1500, n_test: int = 400):
    """Writes the `.npz` (training split seeded 1, test split seeded 2); returns both splits' arrays."""
    (i1, y1, b1), (i2, y2, b2) = arrays(n_train, 1), arrays(n_test, 2)
    np.savez(path, **{"x_train": i1, "y_train/cls": y1, "y_train/box": b1,
                      "x_test": i2, "y_test/cls": y2, "y_test/box": b2})
    return (i1, y1, b1), (i2, y2, b2)


def make(out, *, epochs: int = 15, n_train: int = 1500, n_test: int = 400) -> dict:
    """Writes `heads.npz` and a trained Keras 3 `heads.keras` under `out`; returns the Keras model's metrics on
    the test split: `{"cls": top-1, "box": R²}`."""
    import keras

    from edgecompress.lite.scores import r2_score

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (i1, y1, b1), (i2, y2, b2) = write_data(out / "heads.npz", n_train, n_test)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(16, 3, activation="relu", padding="same")(x))
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(keras.layers.GlobalAveragePooling2D()(x))
    box = keras.layers.Dense(2, name="box")(keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(x)))
    model = keras.Model(inp, [cls, box], name="two_heads")
    model.compile("adam", {"cls": "sparse_categorical_crossentropy", "box": "mse"})
    model.fit(i1.astype("float32"), {"cls": y1, "box": b1}, epochs=epochs, batch_size=32, verbose=0)
    pc, pb = model.predict(i2.astype("float32"), verbose=0)
    model.save(out / "heads.keras")
    return {"cls": float((pc.argmax(1) == y2).mean()), "box": r2_score(pb, b2)}
