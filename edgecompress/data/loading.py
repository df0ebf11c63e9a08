"""Where a `Dataset` comes from: the bundled default, Fashion-MNIST IDX files, image folders, .npz (`load_dataset`).

All loaders return a `Dataset` of uint8 pixels already brought to one
`Preprocessing` spec (size and channels); scaling to floats happens later, in
`preprocessing.to_model_input`, the same way on every path.

Example:

>>> ds = load_dataset()                         # bundled Fashion-MNIST subset
>>> ds = load_dataset("/usr/share/datasets/fashion-mnist")   # full IDX set
>>> ds = load_dataset("photos/", Preprocessing(96, 96, 3))  # one folder per class
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from edgecompress.configs import Features, Preprocessing
from edgecompress.lite import tasks
from edgecompress.errors import EdgeCompressError
from edgecompress.data.arrays import from_arrays, is_npy_folder
from edgecompress.data.dataset import Dataset
from edgecompress.data.images import DEBIAN_FASHION_MNIST, FASHION_MNIST_CLASSES, find_idx, from_folder, from_idx

logger = logging.getLogger(__name__)

BUNDLED_PATH = Path(__file__).parents[1] / "_data" / "fashion_mnist_subset.npz"


def load_dataset(source=None, preprocessing: Preprocessing | None = None, *, test_fraction: float = 0.2, seed: int = 0,
                 task: str = "classification") -> Dataset:
    """Loads a dataset from any supported source, for `task` (`lite.tasks`).

    Args:
        source: `None` or `"default"` for the bundled Fashion-MNIST subset;
            `"fashion-mnist"` for Debian's full copy; a directory of IDX files;
            a directory with one sub-folder of images per class (optionally
            under `train/` and `test/`); or an `.npz` file with `x_train`,
            `y_train`, `x_test`, `y_test` (or `x`, `y`) and optional
            `class_names`. Defaults to `None`.
        preprocessing: The size and channels to bring images to. Defaults to
            the data's own (for a folder, the first image's size and mode).
        test_fraction: Share held out for testing where the source has no
            test split of its own. Defaults to 0.2.
        seed: Seeds that split. Defaults to 0.
        task: What the labels mean: class ids (`"classification"`), or 0 normal and 1 anomalous
            (`"anomaly"`, whose test split needs both). Defaults to `"classification"`.
    """
    t = tasks.task(task)
    ds = _load(source, preprocessing, test_fraction, seed, t.value_labels, getattr(t, "outputs", ()))
    if isinstance(t, tasks.SeveralOutputs):  # labels checked per output as they were packed
        return dataclasses.replace(ds, task=task, class_names=t.group_names())
    if t.name == "classification":
        return ds
    if t.multi_label:
        for split, y in (("y_train", ds.y_train), ("y_test", ds.y_test)):
            if y.ndim != 2 or not np.isin(y, (0, 1)).all():
                raise EdgeCompressError(f"Dataset {ds.name}: for task={task!r} the labels are one 0/1 column per "
                                        f"label (shape (N, labels)); {split} has shape {y.shape} and values "
                                        f"{sorted(float(v) for v in np.unique(y))[:6]}.")
    if t.value_labels:
        return dataclasses.replace(ds, task=task)
    for split, y in (("y_train", ds.y_train), ("y_test", ds.y_test)):
        if not set(np.unique(y)) <= {0, 1}:
            raise EdgeCompressError(f"Dataset {ds.name}: for task={task!r} the labels are 0 (normal) and 1 "
                                    f"(anomaly); {split} holds {sorted(int(v) for v in np.unique(y))[:8]}.")
    if len(np.unique(ds.y_test)) < 2:
        raise EdgeCompressError(f"Dataset {ds.name}: for task={task!r} the test split needs normal (0) and anomalous "
                                f"(1) examples to measure ROC-AUC; it holds only label {int(ds.y_test[0])}.")
    return dataclasses.replace(ds, task=task)


def _load(source, preprocessing, test_fraction, seed, values=False, outputs=()) -> Dataset:
    if values and not (str(source or "").endswith(".npz") or is_npy_folder(source)):
        raise EdgeCompressError(f"Received an invalid value for `data`: {source!r} for a regression or multi-label "
                                "model; its labels are values or 0/1 columns, which only an .npz (or a folder of "
                                ".npy) holds: `x_train`, `y_train` ((N,) or (N, outputs)), `x_test`, `y_test`.")
    if source is None or str(source) == "default":
        return from_arrays(BUNDLED_PATH, preprocessing, test_fraction, seed,
                         name="fashion-mnist-subset", class_names=FASHION_MNIST_CLASSES)
    if str(source) == "fashion-mnist":
        source = DEBIAN_FASHION_MNIST
        if not source.is_dir():
            raise EdgeCompressError(
                f"Full Fashion-MNIST not found at {source}. Install it with "
                "`apt-get install dataset-fashion-mnist`, or pass `--data DIR` "
                "pointing at a folder holding the four IDX files."
            )
    path = Path(source)
    if not path.exists():
        raise EdgeCompressError(
            f"Received an invalid value for `data`: {path} does not exist. Pass "
            "an image folder (one sub-folder per class), an IDX folder or an .npz file."
        )
    if path.is_file():
        if path.suffix != ".npz":
            raise EdgeCompressError(
                f"Received an invalid value for `data`: {path} is a file but not "
                "an .npz archive. Pass an .npz file or a folder."
            )
        return from_arrays(path, preprocessing, test_fraction, seed, name=path.stem, values=values, outputs=outputs)
    if is_npy_folder(path):
        return from_arrays(path, preprocessing, test_fraction, seed, name=path.name, values=values, outputs=outputs)
    if isinstance(preprocessing, Features):
        raise EdgeCompressError(f"Received an invalid value for `data`: {path} is a folder, and the model takes "
                                f"features of shape {preprocessing.shape}, not images. Pass an .npz (or a folder of "
                                "`x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`) at that shape.")
    if find_idx(path, "x_train") is not None:
        return from_idx(path, preprocessing)
    return from_folder(path, preprocessing, test_fraction, seed)


