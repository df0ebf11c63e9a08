"""The one trainer: how every model here trains its epochs (the default teacher, and each training-time stage).

`train` runs a model's epochs by a `configs.TrainConfig`: the held-out split (whole groups when the data
has them), the task's loss (`models.losses`), the rate and its schedule, the early stop, the strategy's
scope, and the seeded shuffle. A stage (`techniques`) says only what is its own: the wrappers it puts on
the model, the loss terms of a distiller, the callbacks it adds. The lower pieces (`fit`, `predict`,
`split_validation`) read data in memory or rows on disk (`data.ondisk`) alike.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from edgecompress.configs import TrainConfig
from edgecompress.data.ondisk import is_lazy, take
from edgecompress.data.preprocessing import to_model_input
from edgecompress.lite import tasks

logger = logging.getLogger(__name__)


def training_targets(dataset, x):
    """What a model learns to output for `x`, `dataset`'s training inputs: the labels, or for an autoencoder
    (`lite.tasks`' `reconstructs`) `x` itself."""
    return x if tasks.task(dataset.task).reconstructs else dataset.y_train


def split_validation(x, y, fraction: float, seed: int, groups=None):
    """Seeded hold-out of `fraction` of (x, y) for validation (rows on disk stay there: `ondisk.take`); with
    `groups` (the training split's, `data.groups`), whole groups, so no person or recording is on both sides."""
    if fraction <= 0:
        return (x, y), None
    if groups is not None and len(np.unique(groups)) >= 2:
        from edgecompress.data.groups import split

        rest, held = split(groups, fraction, seed)
        return (take(x, rest), take(y, rest)), (take(x, held), take(y, held))
    idx = np.random.default_rng(seed).permutation(len(y))
    k = max(1, int(len(y) * fraction))
    return (take(x, idx[k:]), take(y, idx[k:])), (take(x, idx[:k]), take(y, idx[:k]))


def fit(trainer, x, y, *, batch_size: int, validation_data=None, seed: int = 0, **kwargs):
    """`trainer.fit` on (x, y), shuffled each epoch: arrays as they are, or rows on disk (`data.ondisk`) read
    a batch at a time through a `Sequence` (tf_keras makes it a `tf.data` pipeline), so memory does not
    grow with the data. `kwargs` go to `fit` (epochs, callbacks, verbose)."""
    if not any(is_lazy(a) for a in (x, y, *(validation_data or ()))):
        return trainer.fit(x, y, batch_size=batch_size, validation_data=validation_data, shuffle=True, **kwargs)
    batches = _batches_class()
    val = None if validation_data is None else batches(*validation_data, batch_size=batch_size)
    return trainer.fit(batches(x, y, batch_size=batch_size, seed=seed), validation_data=val, **kwargs)


def predict(model, x, batch_size: int | None = None):
    """`model`'s outputs on `x` (float32 inputs, in memory or on disk), one batch at a time.

    The batch defaults to 256 inputs, fewer where that is more than 32 MB of input (224x224x3: 55), since
    a batch's activations are many times its input."""
    row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * 4)
    batch_size = batch_size or int(np.clip((32 << 20) // row, 16, 256))
    # One batch at a time, read as it is needed: `model.predict` builds a tf.data pipeline from the whole
    # array whose copies the allocator keeps (measured on 4,200 64x64 test images: +233 MB of RSS and 1.28 s,
    # against +46 MB and 0.42 s here, the same outputs).
    outs = [np.asarray(model.predict_on_batch(x[a:a + batch_size])) for a in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, *model.output_shape[1:]), np.float32)


_BATCHES = None


def _batches_class():
    """A `keras.utils.Sequence` of (x, y) batches read from rows on disk; with a seed, a new shuffle each epoch."""
    global _BATCHES
    if _BATCHES is None:
        from edgecompress.models.backend import keras

        class Batches(keras.utils.Sequence):
            def __init__(self, x, y, *, batch_size: int, seed: int | None = None):
                super().__init__()
                self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, 0
                self.order = self._order()

            def _order(self):
                n = len(self.x)
                return np.arange(n) if self.seed is None else \
                    np.random.default_rng([self.seed, self.epoch]).permutation(n)

            def __len__(self):
                return -(-len(self.x) // self.batch_size)

            def __getitem__(self, i):
                idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])  # sorted: fewer reads
                return np.asarray(self.x[idx]), np.asarray(self.y[idx])

            def on_epoch_end(self):
                self.epoch += 1
                self.order = self._order()

        _BATCHES = Batches
    return _BATCHES


def keras_metric(model, dataset) -> float:
    """The metric of `dataset.task` (top-1, ROC-AUC: `lite.tasks`) of the Keras `model` on the test split."""
    x = to_model_input(dataset.x_test, dataset.preprocessing)
    return tasks.task(dataset.task).score(x, predict(model, x), dataset.y_test)


def held_out(dataset, config: TrainConfig):
    """`dataset`'s training split as model inputs and targets, less `config.validation_fraction` of it held out
    (whole groups when it has `groups_train`): ((x, y), validation data or None)."""
    x = to_model_input(dataset.x_train, dataset.preprocessing)
    return split_validation(x, training_targets(dataset, x), config.validation_fraction, config.seed,
                            getattr(dataset, "groups_train", None))


def learning_rate(config: TrainConfig, rows: int):
    """Adam's rate for `config`: `config.learning_rate`, or that decaying to 0 over every step of
    `config.epochs` on `rows` training rows (`lr_schedule="cosine"`)."""
    from edgecompress.models.backend import keras

    if config.lr_schedule == "constant":
        return config.learning_rate
    steps = config.epochs * -(-rows // config.batch_size)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)


def train(model, dataset, config: TrainConfig | None = None, *, data=None, compile: bool = True, callbacks=(),
          monitor: tuple[str, str] = ("val_accuracy", "max"), reseed: bool = True, verbose: int = 1):
    """Trains `model` on `dataset`'s training split by `config`; returns Keras' `History`.

    Args:
        model: A Keras model, or a trainer around one (a distiller), built in `config.strategy`'s scope.
        dataset: A `data.Dataset`.
        config: A `configs.TrainConfig`. Defaults to `TrainConfig()`.
        data: `held_out(dataset, config)` when the caller needed the row count first. Defaults to None:
            computed here.
        compile: Compile `model` with Adam and the task's loss (`losses.compile_for_task`) in the strategy's
            scope. Defaults to True; False for a trainer compiled by its stage (a distiller).
        callbacks: The stage's own Keras callbacks (tfmot's `UpdatePruningStep`). Defaults to none.
        monitor: (the held-out metric, "max" or "min") that `config.patience` watches. Defaults to
            held-out top-1.
        reseed: Seed TensorFlow, numpy and Python with `config.seed` first. Defaults to True; a stage that
            seeded before building its wrappers passes False.
        verbose: Keras' progress bars when 1. Defaults to 1.
    """
    from edgecompress.models.backend import fit_verbose, keras
    from edgecompress.models.distribute import get_strategy
    from edgecompress.models.losses import compile_for_task

    config = config or TrainConfig()
    if reseed:
        keras.utils.set_random_seed(config.seed)
    (xt, yt), val = data or held_out(dataset, config)
    if compile:
        with get_strategy(config.strategy).scope():
            compile_for_task(model, learning_rate(config, len(yt)), dataset.task, dataset.value_loss)
    callbacks = list(callbacks)
    if config.patience is not None and val is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor[0], mode=monitor[1], patience=config.patience,
                                                       restore_best_weights=True))
    with warnings.catch_warnings():  # tfmot's wrappers warn on every epoch
        warnings.simplefilter("ignore")
        return fit(model, xt, yt, batch_size=config.batch_size, epochs=config.epochs, validation_data=val,
                   verbose=fit_verbose(verbose), callbacks=callbacks, seed=config.seed)


def train_default_teacher(dataset, config: TrainConfig, *, verbose: int = 1):
    """The bundled teacher CNN, built in `config.strategy`'s scope and trained: the one way every task makes it."""
    from edgecompress.models.distribute import get_strategy
    from edgecompress.models.keras_io import build_teacher

    with get_strategy(config.strategy).scope():
        model = build_teacher(dataset.preprocessing, dataset.num_classes, seed=config.seed)
    train(model, dataset, config, verbose=verbose)
    return model
