"""Datasets: the bundled default, Fashion-MNIST IDX files, image folders, .npz.

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
import functools
import gzip
import hashlib
import logging
import struct
import zipfile
from pathlib import Path

import numpy as np

from edgecompress.configs import Features, ModelSpec, Preprocessing
from edgecompress.data import groups
from edgecompress.data import ondisk
from edgecompress.lite import inputs, tasks
from edgecompress.errors import EdgeCompressError
from edgecompress.data.preprocessing import (
    IMAGE_SUFFIXES,
    ConversionNotice,
    load_image,
    resize_array,
)

logger = logging.getLogger(__name__)

BUNDLED_PATH = Path(__file__).parents[1] / "_data" / "fashion_mnist_subset.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass
class Dataset:
    """uint8 images (N, H, W, C), or float32 features of the model's input shape (`preprocessing` is then a
    `Features`), with integer labels, split into train and test, and optionally a validation split of the
    data's own (`val/` beside `train/`, or `x_val`/`y_val` in an .npz). `groups_*` say which examples share
    a source (`data.groups`; None: independent), and `groups_source` where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    preprocessing: Preprocessing | Features
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    task: str = "classification"  # `lite.tasks`: what the labels mean and what is measured
    # How a model of values (a regression, an autoencoder) trains and distils: `lite.tasks.VALUE_LOSSES`.
    value_loss: str = "mse"
    groups_train: np.ndarray | None = None
    groups_test: np.ndarray | None = None
    groups_val: np.ndarray | None = None
    groups_source: str | None = None  # `data.groups`: GIVEN, PREFIX or CHAINED

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def model_spec(self) -> ModelSpec:
        """What a device needs to feed a model of this data and read its outputs."""
        return ModelSpec(self.preprocessing, self.class_names, self.task)

    def describe(self) -> dict:
        return {
            "name": self.name,
            **({"task": self.task} if self.task != "classification" else {}),
            **({"value_loss": self.value_loss} if self.value_loss != "mse" else {}),
            "split": "test",
            "count": int(len(self.y_test)),
            "train_count": int(len(self.y_train)),
            **({"val_count": int(len(self.y_val))} if self.y_val is not None else {}),
            **({"groups": {"source": self.groups_source, **{
                split: groups.describe(g) for split, g in (("train", self.groups_train), ("test", self.groups_test),
                                                             ("val", self.groups_val)) if g is not None}}}
               if self.groups_source else {}),
            "classes": list(self.class_names),
            "fingerprint": self.fingerprint(),
        }

    def _train_split(self, fraction: float, seed: int):
        """(rest, held) of the training examples: whole groups when there are groups, else stratified."""
        if self.groups_train is not None:
            return groups.split(self.groups_train, fraction, seed)
        return _stratified_split(self.y_train, fraction, seed)

    def validation_split(self, fraction: float = 0.1, seed: int = 0) -> "Dataset":
        """The training images split in two (whole groups, or stratified): the rest to train on, and `fraction`
        of them as this dataset's evaluation split (its `x_test`). A search scores and selects on it; the test
        split stays for reporting."""
        train, val = self._train_split(fraction, seed)
        g = self.groups_train
        return dataclasses.replace(self, name=f"{self.name} (validation {len(val)} of the training images)",
                                   x_train=ondisk.take(self.x_train, train), y_train=self.y_train[train],
                                   x_test=ondisk.take(self.x_train, val), y_test=self.y_train[val], x_val=None,
                                   y_val=None, groups_train=None if g is None else g[train],
                                   groups_test=None if g is None else g[val], groups_val=None)

    def held_out(self, seed: int = 0) -> tuple["Dataset", "Dataset", dict]:
        """(judge, report, how): two datasets with the full training split, each with images no model
        trained on this data learned from as its `x_test`: `judge` to hold a limit against (the data's own
        validation split, or else a seeded half of the test split: whole groups when there are groups, else
        stratified), `report` to confirm and report on (the test split, or its other half). `how` says which
        images went where, and how many groups, for the log and the report."""
        if self.x_val is not None:
            judge = dataclasses.replace(self, name=f"{self.name} (validation split, {len(self.y_val)} images)",
                                        x_test=self.x_val, y_test=self.y_val, x_val=None, y_val=None,
                                        groups_test=self.groups_val, groups_val=None)
            return judge, dataclasses.replace(self, groups_val=None), {
                "judge": "validation split of the data", "judge_count": int(len(self.y_val)),
                "report": "test split", "report_count": int(len(self.y_test)),
                **self._group_counts(self.groups_val, self.groups_test)}
        g = self.groups_test
        if g is not None:
            report_idx, judge_idx = groups.split(g, 0.5, seed)
            how = "half of the test split's groups (seeded)"
        else:
            report_idx, judge_idx = _stratified_split(self.y_test, 0.5, seed)
            how = "half of the test split (stratified, seeded)"
        judge = dataclasses.replace(self, name=f"{self.name} (half of the test split, {len(judge_idx)} images)",
                                    x_test=ondisk.take(self.x_test, judge_idx), y_test=self.y_test[judge_idx],
                                    groups_test=None if g is None else g[judge_idx])
        report = dataclasses.replace(self, x_test=ondisk.take(self.x_test, report_idx),
                                     y_test=self.y_test[report_idx], groups_test=None if g is None else g[report_idx])
        return judge, report, {"judge": how, "judge_count": int(len(judge_idx)),
                               "report": "the other half of the test split", "report_count": int(len(report_idx)),
                               **self._group_counts(judge.groups_test, report.groups_test)}

    def _group_counts(self, judge, report) -> dict:
        if self.groups_source is None:
            return {}
        return {"groups": self.groups_source, "judge_groups": groups.describe(judge),
                "report_groups": groups.describe(report)}

    def without_validation(self, fraction: float = 0.1, seed: int = 0) -> "Dataset":
        """This dataset less `validation_split`'s images: train a teacher on it so a search's validation
        split is held out of everything it learned from. The test split is unchanged."""
        train, _ = self._train_split(fraction, seed)
        g = self.groups_train
        return dataclasses.replace(self, x_train=ondisk.take(self.x_train, train), y_train=self.y_train[train],
                                   x_val=None, y_val=None, groups_train=None if g is None else g[train],
                                   groups_val=None)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test, *(
                (self.x_val, self.y_val) if self.x_val is not None else ())):
            h.update(str(a.shape).encode())
            # On disk, the digest of the rows stands in for their bytes (read once when they were decoded).
            h.update(a.digest().encode() if ondisk.is_lazy(a) else np.ascontiguousarray(a).tobytes())
        h.update("\n".join(self.class_names).encode())
        if self.task != "classification":  # a classifier's fingerprint is what it was before tasks were named
            h.update(f"\ntask={self.task}".encode())
        if self.value_loss != "mse":  # so is a model of values trained by mean squared error
            h.update(f"\nvalue_loss={self.value_loss}".encode())
        for split, g in (("train", self.groups_train), ("test", self.groups_test), ("val", self.groups_val)):
            if g is not None:  # data without groups keeps the fingerprint it had before groups were read
                h.update(f"\ngroups_{split}=".encode() + "\t".join(map(str, g.tolist())).encode())
        return h.hexdigest()


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
        return _from_npz(BUNDLED_PATH, preprocessing, test_fraction, seed,
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
        return _from_npz(path, preprocessing, test_fraction, seed, name=path.stem, values=values, outputs=outputs)
    if is_npy_folder(path):
        return _from_npz(path, preprocessing, test_fraction, seed, name=path.name, values=values, outputs=outputs)
    if isinstance(preprocessing, Features):
        raise EdgeCompressError(f"Received an invalid value for `data`: {path} is a folder, and the model takes "
                                f"features of shape {preprocessing.shape}, not images. Pass an .npz (or a folder of "
                                "`x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy`) at that shape.")
    if _find_idx(path, "x_train") is not None:
        return _from_idx(path, preprocessing)
    return _from_folder(path, preprocessing, test_fraction, seed)


def _finish(name, x_train, y_train, x_test, y_test, class_names, spec, what, x_val=None, y_val=None, values=False):
    class_names = tuple(str(c) for c in class_names)
    n = len(class_names)
    label = (lambda a: np.asarray(a, np.float32)) if values else (lambda a: np.asarray(a).astype(np.int64))
    for split, y in (("train", y_train), ("test", y_test), ("val", y_val if y_val is not None else y_test)):
        if not values and len(y) and (y.min() < 0 or y.max() >= n):
            raise EdgeCompressError(
                f"Dataset {name}: {split} labels must lie in [0, {n - 1}] for "
                f"{n} classes; found values from {int(y.min())} to {int(y.max())}. "
                "Fix the labels or list all classes in `class_names`."
            )
    if len(y_train) == 0 or len(y_test) == 0:
        raise EdgeCompressError(
            f"Dataset {name} has {len(y_train)} training and {len(y_test)} test "
            "examples; both splits need at least one."
        )
    if isinstance(spec, Features):  # as they are: float32, no resizing (shapes checked by the reader)
        x_val = None if x_val is None else _float32(x_val)
        return Dataset(name, _float32(x_train), label(y_train), _float32(x_test),
                       label(y_test), class_names, spec, x_val, None if y_val is None else label(y_val))
    if spec is None:
        spec = Preprocessing(height=int(x_train.shape[1]), width=int(x_train.shape[2]),
                             channels=1 if x_train.ndim == 3 or x_train.shape[-1] == 1 else 3)
    notice = ConversionNotice()
    x_train = _pixels(x_train, spec, notice)
    x_test = _pixels(x_test, spec, notice)
    if x_val is not None:
        x_val, y_val = _pixels(x_val, spec, notice), label(y_val)
    notice.log(what)
    return Dataset(name, x_train, label(y_train), x_test, label(y_test), class_names, spec, x_val, y_val)


def _float32(a):
    """Features as float32: on disk they stay there (cast as their rows are read)."""
    if not ondisk.is_lazy(a):
        return np.asarray(a, np.float32)
    return a if a.dtype == np.float32 else ondisk.Scaled(a, functools.partial(np.asarray, dtype=np.float32),
                                                         label="float32")


def _pixels(a, spec, notice):
    """Pixels at `spec`'s size and channels: on disk they stay there (resized as their rows are read)."""
    if not ondisk.is_lazy(a):
        return resize_array(a, spec, notice)
    if tuple(a.shape[1:]) == tuple(spec.input_shape) and a.dtype == np.uint8:
        return a
    logger.warning("Resizing %d images of shape %s to %s as each batch reads them (they stay on disk); resize them "
                   "once beforehand to save that time.", len(a), tuple(a.shape[1:]), spec.input_shape)
    return ondisk.Scaled(a, functools.partial(resize_array, spec=spec), np.uint8, spec.input_shape,
                         label=f"resize{spec.input_shape}")


def strata(y) -> np.ndarray:
    """What a stratified split balances: class ids as they are, or for regression targets (floats) the decile
    of the first target, so each split spans the range of values."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating) or not len(y):
        return y
    v = y.reshape(len(y), -1)[:, 0]
    if np.all(v == np.round(v)) and (y.ndim == 1 or np.isin(y, (0, 1)).all()):
        return v.astype(np.int64)  # class ids stored as floats; multi-label: the first label
    return np.searchsorted(np.quantile(v, np.linspace(0, 1, 11)[1:-1]), v, side="right")


def _stratified_split(y, test_fraction, seed):
    y = strata(y)
    if not 0 < test_fraction < 1:
        raise EdgeCompressError(
            "Received an invalid value for `test_fraction`, expected a number in "
            f"(0, 1). Received: test_fraction={test_fraction!r}"
        )
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * test_fraction))) if len(idx) > 1 else 0
        test.extend(idx[:k])
    mask = np.zeros(len(y), bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def is_npy_folder(path) -> bool:
    """Whether `path` is a folder of `.npy` arrays (`x_train.npy`, `y_train.npy`, ... or `x.npy`, `y.npy`),
    read memory-mapped: the arrays an .npz would hold."""
    return path is not None and Path(path).is_dir() and any(
        (Path(path) / f"{k}.npy").is_file() or any((Path(path) / k).glob("*.npy")) for k in ("x_train", "x"))


def read_arrays(path) -> dict:
    """The arrays of an .npz (read whole) or of a folder of .npy files: examples larger than
    `ondisk.stream_bytes()` stay on disk (`ondisk.DiskArray`, read a batch at a time), the rest memory-mapped."""
    path = Path(path)
    if path.is_dir():
        try:  # `x_train/<input>.npy`: one array per input of a model of several (`lite.inputs`)
            return {_npy_name(path, f): _npy(f) for f in _npy_files(path)}
        except (OSError, ValueError) as e:
            raise EdgeCompressError(f"Cannot read the .npy files of {path} ({type(e).__name__}: {e}). Re-save them "
                                    "with `numpy.save`.") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise EdgeCompressError(f"Cannot read {path} as an .npz archive ({type(e).__name__}: {e}). "
                                "Re-save it with `numpy.savez`.") from None


def _npy_files(folder: Path) -> list[Path]:
    """A folder's `.npy` arrays: `x_train.npy`, and one level down `x_train/<input>.npy`, sorted."""
    return sorted([*folder.glob("*.npy"), *folder.glob("*/*.npy")])


def _npy_name(folder: Path, f: Path) -> str:
    return f.relative_to(folder).with_suffix("").as_posix()  # `x_train/image`, as an .npz names it


def _npy(f: Path):
    a = np.load(f, mmap_mode="r", allow_pickle=False)
    if f.stem.startswith("x") and a.ndim >= 2 and a.nbytes > ondisk.stream_bytes() and a.flags.c_contiguous:
        return ondisk.DiskArray(f)
    return a


def _peek(path, keys):
    """The first of `keys` in an .npz or a folder of .npy, or None (also for anything else: the reader says
    what is wrong with it)."""
    if path is None or str(path) in ("default", "fashion-mnist"):
        return None
    path = Path(path)
    if not ((path.is_file() and path.suffix == ".npz") or is_npy_folder(path)):
        return None
    try:
        arrays = read_arrays(path)
    except EdgeCompressError:
        return None
    return next((arrays[k] for k in keys if k in arrays), None)


def npz_holds_features(path) -> bool:
    """Whether an .npz's (or .npy folder's) examples are features rather than pixels: floats outside 0..255
    (MFCCs, sensor values). Features inside that range with an image-shaped model input are read as pixels."""
    x = _peek(path, ("x_train", "x"))
    if x is None or not len(x) or not np.issubdtype(x.dtype, np.floating):
        return False
    lo, hi, bad = ondisk.stats(x)
    return not bad and (lo < 0 or hi > 255)


def npz_holds_values(path) -> bool:
    """Whether an .npz's (or .npy folder's) labels are values (regression targets: floats that are not all
    whole numbers, or several columns), not class ids."""
    y = _peek(path, ("y_train", "y"))
    return (y is not None and y.size > 0 and np.issubdtype(y.dtype, np.floating) and bool(np.isfinite(y).all())
            and (y.ndim == 2 or not np.all(y == np.round(y))))


def _from_npz(path, spec, test_fraction, seed, name, class_names=None, values=False, outputs=()):
    arrays = read_arrays(path)
    if isinstance(spec, Features) and spec.inputs:
        arrays = _packed(arrays, spec.inputs, path)
    if outputs:
        arrays = _packed_labels(arrays, outputs, path)
    given = {}  # split -> group ids given in the file
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        xtr, ytr, xte, yte = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        for split in ("train", "test", "val"):
            if f"groups_{split}" in arrays:
                if f"x_{split}" not in arrays:
                    raise EdgeCompressError(f"{path} holds `groups_{split}` but no `x_{split}`; groups go beside "
                                            "the examples they name.")
                given[split] = groups.check(arrays[f"groups_{split}"], len(arrays[f"x_{split}"]), path, split)
    elif {"x", "y"} <= arrays.keys():
        if "groups" in arrays:  # whole groups held out for testing: the test split measures new groups
            g = groups.check(arrays["groups"], len(arrays["x"]), path, "all")
            tr, te = groups.split(g, test_fraction, seed)
            given = {"train": g[tr], "test": g[te]}
        else:
            tr, te = _stratified_split(strata(np.asarray(arrays["y"])), test_fraction, seed)
        xtr, ytr = ondisk.take(arrays["x"], tr), np.asarray(arrays["y"])[tr]
        xte, yte = ondisk.take(arrays["x"], te), np.asarray(arrays["y"])[te]
    else:
        raise EdgeCompressError(
            f"{path} holds arrays {sorted(arrays)}; expected `x_train`, `y_train`, "
            "`x_test`, `y_test` (or `x` and `y`), with optional `class_names`."
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise EdgeCompressError(f"{path} holds only one of `x_val` and `y_val`; a validation split needs both.")
    xva, yva = arrays.get("x_val"), arrays.get("y_val")
    features = isinstance(spec, Features)
    for key, a in (("x_train", xtr), ("x_test", xte), *((("x_val", xva),) if xva is not None else ())):
        if features and tuple(a.shape[1:]) != spec.shape:
            raise EdgeCompressError(f"{path}: `{key}` has examples of shape {tuple(a.shape[1:])} ({a.dtype}); the "
                                    f"model takes features of shape {spec.shape} (its input is not an image). Pass "
                                    "the data it was trained on, at that shape.")
        if not np.issubdtype(a.dtype, np.number):
            raise EdgeCompressError(f"{path}: `{key}` must be numeric, got dtype {a.dtype}.")
        lo, hi, bad = ondisk.stats(a)  # in chunks when the examples stay on disk
        if bad:
            raise EdgeCompressError(
                f"{path}: `{key}` contains NaN or infinite values "
                f"({bad} of them). Clean the data first."
            )
        if features:
            continue  # features are fed as they are: no pixel range to check
        if len(a) and (lo < 0 or hi > 255):
            # Not pixels: cast to uint8, every number the build reports would be wrong, and nothing would say so.
            raise EdgeCompressError(
                f"{path}: `{key}` holds values in [{lo:.4g}, {hi:.4g}] ({a.dtype}), not "
                "0..255 pixels: features such as MFCCs, sensor series or tabular columns, which cast to pixels would "
                "be wrong. Features go with a model whose input is not an image (its shape is read from the model, "
                "and they are fed as they are); for an image model, store raw 0..255 pixels.")
        if np.issubdtype(a.dtype, np.floating) and len(a) and 0 < hi <= 1.0:
            raise EdgeCompressError(
                f"{path}: `{key}` looks already scaled to [0, 1]; store raw 0..255 "
                "pixels so the saved preprocessing can scale them the same way on device."
            )
    if values:  # regression targets: one value, or one column per output unit
        for key, a in (("y_train", ytr), ("y_test", yte), *((("y_val", yva),) if yva is not None else ())):
            a = np.asarray(a)
            if a.ndim not in (1, 2) or not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
                raise EdgeCompressError(f"{path}: `{key}` must hold finite regression targets, (N,) or (N, outputs); "
                                        f"got shape {a.shape} and dtype {a.dtype}.")
        width = 1 if np.ndim(ytr) == 1 else np.shape(ytr)[1]
        names = ([str(c) for c in arrays["class_names"]] if "class_names" in arrays else
                 ["value"] if width == 1 else [f"value_{i}" for i in range(width)])
        return _grouped(_finish(name, xtr, ytr, xte, yte, names, spec, f"examples of {path.name}", xva, yva,
                                values=True), given, path)
    for key, a in (("y_train", ytr), ("y_test", yte), *((("y_val", yva),) if yva is not None else ())):
        a = np.asarray(a)
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer)
                               or (np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all()
                                   and np.all(a == np.round(a)))):
            raise EdgeCompressError(
                f"{path}: `{key}` must be a 1-D array of integer class ids; got "
                f"shape {a.shape} and dtype {a.dtype}."
            )
    ytr, yte = np.asarray(ytr).astype(np.int64), np.asarray(yte).astype(np.int64)
    if class_names is None:
        if "class_names" in arrays:
            class_names = [str(c) for c in arrays["class_names"]]
        else:
            class_names = [str(i) for i in range(int(max(ytr.max(), yte.max())) + 1)]
    return _grouped(_finish(name, xtr, ytr, xte, yte, class_names, spec, f"images of {path.name}",
                            xva, None if yva is None else np.asarray(yva).astype(np.int64)), given, path)


def _grouped(ds: Dataset, given: dict, path) -> Dataset:
    """`ds` with the groups `given` in the file, or else (features only) the chains of overlapping windows found
    in each split (`data.groups.chain_windows`), logged; unchanged when neither."""
    if given:
        return dataclasses.replace(ds, groups_source=groups.GIVEN, **{f"groups_{k}": v for k, v in given.items()})
    if not isinstance(ds.preprocessing, Features):
        return ds
    found = {}
    for split in ("train", "test", "val"):
        x = getattr(ds, f"x_{split}")
        if x is None or ondisk.is_lazy(x):  # rows on disk are not read whole to look for chains
            continue
        g = groups.chain_windows(x)
        if g is not None and len(np.unique(g)) >= 2:
            found[split] = g
    if not found:
        return ds
    logger.info("%s: consecutive rows overlap like the windows of one recording; chained into %s (each chain is a "
                "group: held out whole, counted once in error bars). Give `groups_train`/`groups_test` to say "
                "otherwise.", path, ", ".join(f"{len(np.unique(g))} groups in `x_{k}`" for k, g in found.items()))
    return dataclasses.replace(ds, groups_source=groups.CHAINED, **{f"groups_{k}": v for k, v in found.items()})


def _packed(arrays: dict, layout, path) -> dict:
    """`arrays` with each split of a model of several inputs (`x_train/<input>`, ...) packed into one row per
    example (`lite.inputs.pack`), under the split's own key (`x_train`), as a model of one input has it."""
    names = [n for n, _ in layout]
    splits = ("x_train", "x_test", "x_val", "x")
    out = {k: v for k, v in arrays.items() if k.split("/", 1)[0] not in splits or "/" not in k}
    for key in splits:
        mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(key + "/")}
        if key in arrays and not mine:
            raise EdgeCompressError(
                f"{path}: `{key}` is one array, and the model takes {len(names)} inputs ({', '.join(names)}). Store "
                f"one array per input, named after it: {', '.join(f'`{key}/{n}`' for n in names)}.")
        if mine:
            out[key] = _pack_split(mine, layout, path, key)
    return out


def _pack_split(arrays: dict, layout, path, key: str):
    """One split of a model of several inputs as packed rows: in memory, or, from a folder of `.npy` whose
    packed rows are more than `ondisk.stream_bytes()`, packed once, a chunk of rows at a time, into the data
    cache and read from there as a batch needs them (`ondisk.DiskArray`), as a folder of images is decoded."""
    where = f"{path}: `{key}`"
    count = inputs.check_arrays(arrays, layout, where)
    row = sum(inputs.width(shape) for _, shape in layout)
    total = 4 * count * row
    if not Path(path).is_dir() or total <= ondisk.stream_bytes():
        return inputs.pack(arrays, layout, where=where)
    digest = hashlib.sha256(repr([(n, tuple(s)) for n, s in layout]).encode())
    for name, _ in layout:
        f = Path(path) / key / f"{name}.npy"
        st = f.stat()
        digest.update(f"\n{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    cached = ondisk.cache_dir() / f"packed-{digest.hexdigest()[:24]}.npy"
    if cached.exists():
        logger.info("Reading %d packed rows of %s from %s (%.2f GB, on disk)", count, where, cached, total / 1e9)
        return ondisk.DiskArray(cached)
    logger.info("Packing %d examples of %s (%.2f GB of float32 rows, more than the %.2f GB held in memory: %s) into "
                "%s; each batch reads its rows from there", count, where, total / 1e9, ondisk.stream_bytes() / 1e9,
                ondisk.STREAM_ENV, cached)

    def rows():  # `ondisk.chunks` of the packed rows, sized by a view that holds none of them
        for start, stop in ondisk.chunks(np.broadcast_to(np.float32(0), (count, row))):
            yield from inputs.pack({n: a[start:stop] for n, a in arrays.items()}, layout, where=where)

    return ondisk.write_rows(cached, (row,), np.float32, count, rows())


def labelled_outputs(source) -> list[str]:
    """The outputs an .npz (or a folder of .npy) labels one by one (`y_train/<output>`), or [] (also for any
    other source): a model of several outputs is then built on all of them, each measured."""
    if source is None or str(source) in ("default", "fashion-mnist"):
        return []
    path = Path(source)
    if not ((path.is_file() and path.suffix == ".npz") or is_npy_folder(path)):
        return []
    return sorted(k.split("/", 1)[1] for k in array_names(path) if k.startswith("y_train/"))


def array_names(path) -> list[str]:
    """The names of the arrays an .npz or a folder of .npy holds (`read_arrays`' keys), read without the
    arrays themselves; [] for what cannot be read (the reader says what is wrong with it)."""
    path = Path(path)
    if path.is_dir():
        return [_npy_name(path, f) for f in _npy_files(path)]
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return []


def read_array(path, name: str) -> np.ndarray:
    """One array of an .npz or a folder of .npy (`read_arrays`), without reading the others."""
    path = Path(path)
    if path.is_dir():
        return np.asarray(np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False))
    with np.load(path, allow_pickle=False) as z:
        return z[name]


def _packed_labels(arrays: dict, outputs, path) -> dict:
    """`arrays` with each split's labels of a model of several outputs (`y_train/<output>`, ...) as one row of
    columns per example (`lite.tasks.Output.label_columns` each: a class id, or the output's values), float32."""
    splits = ("y_train", "y_test", "y_val", "y")
    out = {k: v for k, v in arrays.items() if k.split("/", 1)[0] not in splits or "/" not in k}
    for key in splits:
        mine = {k.split("/", 1)[1]: np.asarray(v) for k, v in arrays.items() if k.startswith(key + "/")}
        if not mine:
            continue
        cols = []
        for o in outputs:
            if o.name not in mine:
                raise EdgeCompressError(f"{path}: no `{key}/{o.name}`; a model of several outputs measured each needs "
                                        f"labels for each of its outputs ({', '.join(x.name for x in outputs)}).")
            a = mine[o.name].reshape(len(mine[o.name]), -1).astype(np.float32)
            if a.shape[1] != o.label_columns or not np.isfinite(a).all():
                raise EdgeCompressError(
                    f"{path}: `{key}/{o.name}` has {a.shape[1]} column(s) per example; output {o.name!r} "
                    f"({o.task}, {o.width} units) takes {o.label_columns}"
                    f"{' (a class id)' if o.task == 'classification' else ' (one value per unit)'}, all finite.")
            if o.task == "classification" and (a.min() < 0 or a.max() >= max(o.width, 2) or (a != np.round(a)).any()):
                raise EdgeCompressError(f"{path}: `{key}/{o.name}` holds values from {a.min():g} to {a.max():g}; "
                                        f"output {o.name!r} has {o.width} classes: class ids 0..{max(o.width, 2) - 1}.")
            cols.append(a)
        out[key] = np.concatenate(cols, axis=1)
    return out


def _find_idx(folder: Path, key: str):
    for suffix in (".gz", ""):
        p = folder / (_IDX_FILES[key] + suffix)
        if p.exists():
            return p
    return None


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"not an unsigned-byte IDX file (magic {data[:4].hex()})")
        dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, struct.error, ValueError) as e:
        raise EdgeCompressError(f"Cannot read IDX file {path}: {e}.") from None


def _from_idx(folder: Path, spec):
    arrays = {}
    for key in _IDX_FILES:
        p = _find_idx(folder, key)
        if p is None:
            raise EdgeCompressError(
                f"IDX folder {folder} lacks {_IDX_FILES[key]}(.gz); it needs all four "
                f"files: {sorted(_IDX_FILES.values())}."
            )
        arrays[key] = read_idx(p)
    classes = FASHION_MNIST_CLASSES if int(arrays["y_train"].max()) < 10 else range(int(arrays["y_train"].max()) + 1)
    name = "fashion-mnist" if folder.resolve() == DEBIAN_FASHION_MNIST else folder.name
    return _finish(name, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                   arrays["y_test"], classes, spec, "IDX images")


def _class_dirs(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _infer_spec(first_image: Path) -> Preprocessing:
    from PIL import Image

    with Image.open(first_image) as img:
        channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
        return Preprocessing(height=img.size[1], width=img.size[0], channels=channels)


def _read_classes(root: Path, class_names, spec, notice):
    """(images, labels, groups): groups from `<group>__` file-name prefixes (`data.groups`), or None."""
    files, ys = [], []
    for label, name in enumerate(class_names):
        d = root / name
        for f in _images_in(d) if d.is_dir() else []:
            files.append(f)
            ys.append(label)
    if not files:
        raise EdgeCompressError(f"No images (PNG/JPEG/BMP/GIF/WebP/TIFF) found under {root}.")
    g = groups.from_prefixes(files, root)
    if g is not None:
        groups.check(g, len(files), root, root.name)
    return _decode(files, spec, notice, root), np.asarray(ys, np.int64), g


def _decode(files, spec, notice, root):
    """The images `files` as uint8 (N, H, W, C): in memory, or above `ondisk.stream_bytes()` decoded once
    into the data cache and read from there as a batch needs them (`ondisk.DiskArray`)."""
    shape = tuple(spec.input_shape)
    total = len(files) * int(np.prod(shape))
    if total <= ondisk.stream_bytes():
        out = np.empty((len(files), *shape), np.uint8)
        for i, f in enumerate(files):
            out[i] = load_image(f, spec, notice)
        return out
    key = hashlib.sha256(spec.to_json().encode())
    for f in files:
        st = f.stat()
        key.update(f"\n{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    path = ondisk.cache_dir() / f"images-{key.hexdigest()[:24]}.npy"
    if path.exists():
        logger.info("Reading %d decoded images of %s from %s (%.2f GB, on disk)", len(files), root, path, total / 1e9)
        return ondisk.DiskArray(path)
    logger.info("Decoding %d images of %s (%.2f GB of pixels, more than the %.2f GB held in memory: %s) into %s; "
                "each batch reads its rows from there", len(files), root, total / 1e9, ondisk.stream_bytes() / 1e9,
                ondisk.STREAM_ENV, path)

    def rows():
        step = max(1000, len(files) // 10)
        for i, f in enumerate(files):
            if i and i % step == 0:
                logger.info("Decoded %d of %d images", i, len(files))
            yield load_image(f, spec, notice)

    return ondisk.write_rows(path, shape, np.uint8, len(files), rows())


VALIDATION_DIRS = ("val", "validation")


def _from_folder(folder: Path, spec, test_fraction, seed):
    split_dirs = {d.name for d in _class_dirs(folder)}
    val_dirs = [d for d in VALIDATION_DIRS if d in split_dirs]
    if "train" in split_dirs and len(val_dirs) > 1:
        raise EdgeCompressError(f"{folder} has both `val/` and `validation/` beside `train/`; keep one.")
    val_dir = folder / val_dirs[0] if "train" in split_dirs and val_dirs else None
    presplit = "train" in split_dirs and ("test" in split_dirs or val_dir is not None)
    class_root = folder / "train" if presplit else folder
    classes = [d.name for d in _class_dirs(class_root)]
    if not classes:
        raise EdgeCompressError(
            f"Received an invalid value for `data`: {folder} has no class sub-folders. "
            "Put the images of each class in a sub-folder named after the class, "
            "e.g. data/cat/1.png, data/dog/2.png."
        )
    if len(classes) < 2:
        raise EdgeCompressError(
            f"{class_root} has only one class sub-folder ({classes[0]!r}); a "
            "classifier needs at least 2. Add a sub-folder per class."
        )
    empty = [c for c in classes if not _images_in(class_root / c)]
    if empty:
        raise EdgeCompressError(
            f"Class folder(s) {empty} under {class_root} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}). Add images or remove the folder."
        )
    if spec is None:
        spec = _infer_spec(_images_in(class_root / classes[0])[0])
    notice = ConversionNotice()
    logger.info("Reading images of %d classes from %s", len(classes), folder)
    xva = yva = None
    if presplit:
        for split in ("test", val_dir.name if val_dir else None):
            if split and (folder / split).is_dir():
                theirs = [d.name for d in _class_dirs(folder / split)]
                if theirs != classes:
                    raise EdgeCompressError(
                        f"{folder / split} has class folders {theirs}, but {class_root} has {classes}. Every split "
                        "needs the same class sub-folders (the model's output order is their sorted order).")
        xtr, ytr, gtr = _read_classes(folder / "train", classes, spec, notice)
        gva = None
        if val_dir is not None:
            xva, yva, gva = _read_classes(val_dir, classes, spec, notice)
        if (folder / "test").is_dir():
            xte, yte, gte = _read_classes(folder / "test", classes, spec, notice)
        else:  # train/ and val/ only: the validation images are the only held-out ones, test included
            xte, yte, gte, xva, yva, gva = xva, yva, gva, None, None, None
    else:
        x, y, g = _read_classes(folder, classes, spec, notice)
        tr, te = groups.split(g, test_fraction, seed) if g is not None else _stratified_split(y, test_fraction, seed)
        xtr, ytr, xte, yte = ondisk.take(x, tr), y[tr], ondisk.take(x, te), y[te]
        gtr, gte, gva = (None, None, None) if g is None else (g[tr], g[te], None)
    notice.log(f"images of {folder}")
    ds = Dataset(folder.name, xtr, ytr, xte, yte, tuple(classes), spec, xva, yva)
    found = {k: v for k, v in (("train", gtr), ("test", gte), ("val", gva)) if v is not None}
    if found:
        logger.info("Groups from file-name prefixes (`<group>%s`): %s", groups.PREFIX_SEPARATOR,
                    ", ".join(f"{groups.describe(v)} in {k}" for k, v in found.items()))
        ds = dataclasses.replace(ds, groups_source=groups.PREFIX, **{f"groups_{k}": v for k, v in found.items()})
    return ds
