"""`sensor-people`: a grouped example, the way activity-recognition data really comes.

Six activities (walking, upstairs, downstairs, sitting, standing, lying) recorded by a phone's accelerometer and
gyroscope (6 channels at 50 Hz), cut into windows of 128 steps with 50% overlap. Every person differs: a gain and
an offset per channel (the phone's fit and calibration), a tilt of the phone (which moves gravity between the
axes, so sitting and standing blur), a gait rhythm and stride strength, and their own noise. So a model fails on
some people more than others, and the windows of one person (and the overlapping windows of one recording) are
not independent examples.

`make_sensors` writes, seeded:
- `data.npz`: `x_train`/`y_train`/`groups_train` (`train_people`) and `x_test`/`y_test`/`groups_test`
  (`test_people`): what `build-edge --data` is given, with the people as groups;
- `fresh.npz`: `x_test`/`y_test`/`groups_test` of `fresh_people` further people the build never sees, to judge
  the selected file on new groups (`scripts/fresh_check.py`);
- `model.keras`: the much-copied Keras 1D CNN for activity recognition (two Conv1D 64, Dropout, MaxPooling1D,
  Flatten, Dense 100, softmax 6), Keras 3, trained on the training people.
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

ACTIVITIES = ("walking", "upstairs", "downstairs", "sitting", "standing", "lying")
RATE_HZ = 50
WINDOW = 128
STRIDE = 64  # 50% overlap


@dataclasses.dataclass(frozen=True)
class SensorConfig:
    """What `make_sensors` makes.

    Args:
        train_people, test_people, fresh_people: People in each split; none is in two. Default to 24, 16, 12.
        windows: Windows per person and activity (one recording each). Defaults to 40.
        epochs: Training epochs of the model. Defaults to 12.
        seed: Seeds people, recordings and training. Defaults to 0.
        min_accuracy: The model's test top-1 must reach this, or the maker raises. Defaults to 0.6.
    """

    train_people: int = 24
    test_people: int = 16
    fresh_people: int = 12
    windows: int = 40
    epochs: int = 12
    seed: int = 0
    min_accuracy: float = 0.6


def _rotation(rng, degrees: float) -> np.ndarray:
    """A random rotation of up to `degrees` about a random axis (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(-degrees, degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _person(rng) -> dict:
    return {"gain": rng.uniform(0.85, 1.15, 6), "offset": rng.normal(0, 0.06, 6), "tilt": _rotation(rng, 15),
            "rhythm": rng.uniform(0.85, 1.2), "stride": rng.uniform(0.7, 1.3), "noise": rng.uniform(0.05, 0.25)}


# gravity direction (phone frame) and gait (frequency Hz, vertical amplitude, sharpness) per activity
_POSTURE = {"walking": (0, 0, 1), "upstairs": (0.15, 0, 0.99), "downstairs": (-0.1, 0, 0.99),
            "sitting": (0.5, 0, 0.87), "standing": (0.1, 0.05, 0.99), "lying": (0.97, 0.1, 0.2)}
_GAIT = {"walking": (1.8, 0.9, 1.0), "upstairs": (1.5, 0.7, 1.6), "downstairs": (2.0, 1.1, 0.6)}


def recording(person: dict, activity: str, steps: int, rng) -> np.ndarray:
    """(steps, 6) float32: accelerometer (g) and gyroscope (rad/s) of one person doing one activity."""
    t = np.arange(steps) / RATE_HZ
    acc = np.tile(np.asarray(_POSTURE[activity], float), (steps, 1))
    gyro = np.zeros((steps, 3))
    if activity in _GAIT:
        f, amp, sharp = _GAIT[activity]
        f *= person["rhythm"]
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * f * t + phase)
        beat = np.sign(wave) * np.abs(wave) ** sharp * amp * person["stride"]
        acc[:, 2] += 0.5 * beat
        acc[:, 0] += 0.25 * np.sin(2 * np.pi * f * t / 2 + phase) * person["stride"]
        gyro[:, 1] = 0.8 * np.cos(2 * np.pi * f * t / 2 + phase) * person["stride"]
        gyro[:, 2] = 0.3 * beat
    else:  # postures: a slow sway and breathing
        acc += 0.03 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6))[:, None]
        gyro += 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))[:, None]
    acc = acc @ person["tilt"].T
    gyro = gyro @ person["tilt"].T
    x = np.concatenate([acc, gyro], axis=1) * person["gain"] + person["offset"]
    x += rng.normal(0, person["noise"], x.shape)
    return x.astype(np.float32)


def windows(people, n_windows: int, rng, first_id: int = 0):
    """(x, y, groups): each person's recording of each activity, cut into `n_windows` overlapping windows, in
    recording order (consecutive rows overlap, as `data.groups.chain_windows` finds)."""
    xs, ys, gs = [], [], []
    steps = WINDOW + STRIDE * (n_windows - 1)
    for i, person in enumerate(people):
        for label, activity in enumerate(ACTIVITIES):
            rec = recording(person, activity, steps, rng)
            for k in range(n_windows):
                xs.append(rec[k * STRIDE:k * STRIDE + WINDOW])
                ys.append(label)
                gs.append(first_id + i)
    return np.stack(xs), np.asarray(ys, np.int64), np.asarray(gs, np.int64)


def har_cnn(keras, classes: int = len(ACTIVITIES)):
    """The much-copied 1D CNN: Conv1D 64, Conv1D 64, Dropout 0.5, MaxPooling1D, Flatten, Dense 100, softmax."""
    return keras.Sequential([
        keras.Input((WINDOW, 6)),
        keras.layers.Conv1D(64, 3, activation="relu"),
        keras.layers.Conv1D(64, 3, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.MaxPooling1D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="har_cnn")


def make_sensors(out, config: SensorConfig | None = None) -> dict:
    """Writes `data.npz`, `fresh.npz`, `model.keras` and `example.json` under `out`; returns the summary."""
    import keras

    config = config or SensorConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    n = config.train_people + config.test_people + config.fresh_people
    people = [_person(rng) for _ in range(n)]
    a, b = config.train_people, config.train_people + config.test_people
    xtr, ytr, gtr = windows(people[:a], config.windows, rng, 0)
    xte, yte, gte = windows(people[a:b], config.windows, rng, a)
    xfr, yfr, gfr = windows(people[b:], config.windows, rng, b)
    np.savez(out / "data.npz", x_train=xtr, y_train=ytr, groups_train=gtr, x_test=xte, y_test=yte, groups_test=gte,
             class_names=np.asarray(ACTIVITIES))
    np.savez(out / "fresh.npz", x_test=xfr, y_test=yfr, groups_test=gfr, class_names=np.asarray(ACTIVITIES))
    keras.utils.set_random_seed(config.seed)
    model = har_cnn(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.time()
    model.fit(xtr, ytr, batch_size=64, epochs=config.epochs, verbose=2, shuffle=True)
    seconds = time.time() - t0
    top1 = {k: float((model.predict(x, verbose=0).argmax(-1) == y).mean()) for k, x, y in
            (("test", xte, yte), ("fresh", xfr, yfr))}
    if top1["test"] < config.min_accuracy:
        raise EdgeCompressError(f"The example model reached {100 * top1['test']:.2f}% top-1 on its test people, "
                                f"below its pinned minimum {100 * config.min_accuracy:.0f}%: the generator changed.")
    model.save(out / "model.keras")
    summary = {"config": dataclasses.asdict(config), "keras3_top1": top1["test"], "fresh_top1": top1["fresh"],
               "params": int(model.count_params()), "train_seconds": round(seconds, 1),
               "windows": {"train": len(ytr), "test": len(yte), "fresh": len(yfr)},
               "files": ["model.keras", "data.npz", "fresh.npz"]}
    (out / "example.json").write_text(json.dumps(summary, indent=2))
    logger.info("sensor-people: %d parameters, top-1 %.2f%% on %d test people, %.2f%% on %d fresh people (%.0f s)",
                summary["params"], 100 * top1["test"], config.test_people, 100 * top1["fresh"], config.fresh_people,
                seconds)
    return summary
