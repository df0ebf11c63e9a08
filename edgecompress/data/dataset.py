"""`Dataset`: a model's data as every stage reads it (uint8 pixels at one `Preprocessing` spec, or float32
features), its splits (validation, judging and confirmation, by group when it has groups), and `assemble`, which
every reader (`data.arrays`, `data.images`) ends with.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging

import numpy as np

from edgecompress.configs import Features, ModelSpec, Preprocessing
from edgecompress.data import groups
from edgecompress.data import ondisk
from edgecompress.errors import EdgeCompressError
from edgecompress.data.preprocessing import (
    ConversionNotice,
    resize_array,
)

logger = logging.getLogger(__name__)


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
        return stratified_split(self.y_train, fraction, seed)

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
            report_idx, judge_idx = stratified_split(self.y_test, 0.5, seed)
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


def assemble(name, x_train, y_train, x_test, y_test, class_names, spec, what, x_val=None, y_val=None, values=False):
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


def stratified_split(y, test_fraction, seed):
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
