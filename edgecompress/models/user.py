"""A user's model file opened the one way every task opens it.

Load (Keras 3 or tf-keras, nested sub-models inlined), read the saved
preprocessing spec or choose the pixel scale, load the data at the model's
input size, and check the class count: `build-edge`, the stage tasks and the
benchmark all call `open_model`, so they agree on what the model expects.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from edgecompress.models import keras_io
from edgecompress.configs import Features, Preprocessing
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

SCALES = ("auto", *Preprocessing.SCALES)


@dataclasses.dataclass
class UserModel:
    """A loaded model with its data and what was decided about it.

    Attributes:
        model: The flat tf-keras model the stages work on.
        dataset: The data at the model's input size and pixel scale.
        format: `"keras3"` or `"tf_keras"`: what the file was saved by, and
            what edgecompress writes back (`keras_io.save_model(fmt=...)`).
        translation: What was translated or flattened (`translate.TranslationLog`).
        scale: How the pixel scale was chosen (`pixelscale.ScaleChoice`), or
            None when it came from a saved spec.
    """

    model: object
    dataset: object
    format: str
    translation: object
    scale: object = None

    @property
    def spec(self) -> Preprocessing:
        return self.dataset.preprocessing

    def describe(self) -> dict:
        what = ({"head": keras_io.output_head(self.model)} if self.dataset.task == "classification" else
                {"task": self.dataset.task})
        return {"format": self.format, **what, "translation": self.translation.to_dict(),
                "scale": self.scale.to_dict() if self.scale else {
                    "scale": self.spec.scale, "reason": "features, fed as they are" if isinstance(self.spec, Features)
                    else "saved spec"}}


def check_scale_name(scale: str) -> None:
    if scale not in SCALES:
        raise EdgeCompressError(f"Received an invalid value for `scale`, expected one of {list(SCALES)}. "
                                f"Received: scale={scale!r}")


def open_model(path, data=None, *, scale: str = "auto", seed: int = 0, safe_mode: bool = True,
               task: str | None = None, output: str | None = None) -> UserModel:
    """Loads `path` and `data` as the stages need them.

    Args:
        path: A `.keras`/`.h5` file (Keras 3 or tf-keras) or a SavedModel.
        data: A dataset source (`data.load_dataset`). Defaults to the
            bundled subset.
        scale: `"auto"` (a saved `.spec.json` beside the model, else
            `pixelscale.choose_scale`), or `unit`/`symmetric`/`raw`, which
            is still measured so a near-chance model stops here. Defaults
            to `"auto"`.
        seed: Seeds data splits and the scale sample. Defaults to 0.
        safe_mode: Refuse Lambda layers. Defaults to True.
        task: `lite.tasks`' name; defaults to the saved spec's, else what the model's shapes say
            (`keras_io.model_task`: an autoencoder is an anomaly detector) and the labels (values, not class ids:
            a regression); anything else is a classifier.
    """
    from edgecompress.models import pixelscale
    from edgecompress.models import translate
    from edgecompress.data.arrays import labelled_outputs, npz_holds_features, npz_holds_values
    from edgecompress.data.loading import load_dataset

    check_scale_name(scale)
    log = translate.TranslationLog()
    labelled = labelled_outputs(data)
    model = keras_io.load_model(path, safe_mode=safe_mode, log=log, output=output, all_outputs=bool(labelled))
    fmt = log.source  # what the file was saved by: "keras3" or "tf_keras"
    if labelled:
        return _several_outputs(model, data, fmt, log, scale, seed, task, output, labelled)
    saved = keras_io.load_spec(path)
    if saved is not None and scale == "auto":
        return UserModel(model, _with_value_loss(load_dataset(data, saved.preprocessing, seed=seed,
                                                              task=task or saved.task), path), fmt, log)
    spec = keras_io.input_preprocessing(model, "unit")
    if isinstance(spec, Preprocessing) and npz_holds_features(data):  # a (49, 10, 1) MFCC input looks like an image
        spec = Features(spec.input_shape)
    # What the model and the labels say: an autoencoder detects anomalies; value labels make a regression.
    # The model's shapes first (an autoencoder, several sigmoid units), then labels that are values.
    shaped = keras_io.model_task(model)
    task = task or (shaped if shaped != "classification" else "regression" if npz_holds_values(data) else shaped)
    if task == "classification" and shaped == "multilabel":
        raise EdgeCompressError(f"Model {path} ends in {model.output_shape[-1]} sigmoid units: a label per unit "
                                "(multi-label), not one class per example. Pass `--task multilabel` with labels of one "
                                "0/1 column per unit (an .npz), or end the model in softmax for one class per example.")
    dataset = _with_value_loss(load_dataset(data, spec, seed=seed, task=task), path)
    if task != "classification":
        return _other_task(model, dataset, fmt, log, scale)
    n_out = model.output_shape[-1]
    head = keras_io.output_head(model)
    if n_out != (1 if head == "sigmoid" else dataset.num_classes) or (head == "sigmoid" and dataset.num_classes != 2):
        raise EdgeCompressError(
            f"Model {path} has {n_out} outputs but the data has {dataset.num_classes} "
            f"classes ({list(dataset.class_names)}; its head: {head}). Pass the data the model was trained on"
            f"{' (one sigmoid unit: two classes)' if head == 'sigmoid' else ''}."
        )
    logger.info("Head: %s (%s)", head, {"softmax": "probabilities", "logits": "a Dense with no activation: "
                                        "trained and distilled from logits, kept a logits model",
                                        "sigmoid": "one sigmoid unit: two classes"}[head])
    if isinstance(spec, Features):
        logger.info("Input: features of shape %s, fed to the model as they are (no pixel scaling)", spec.shape)
        return UserModel(model, dataset, fmt, log)
    choice = pixelscale.choose_scale(model, dataset, requested=scale, seed=seed)
    dataset = dataclasses.replace(dataset, preprocessing=dataclasses.replace(spec, scale=choice.scale))
    return UserModel(model, dataset, fmt, log, choice)


def _several_outputs(model, data, fmt, log, scale, seed, task, output, labelled) -> UserModel:
    """A model of several outputs whose data labels each (`y_train/<output>`): built on all of them, packed into
    one (`keras_io.packed.pack_outputs`), each measured by its own task, read from its labels (class ids:
    classification by its head; values: regression); the limit holds on `output` (the first by default)."""
    from edgecompress.data.arrays import read_array
    from edgecompress.data.loading import load_dataset
    from edgecompress.lite import tasks
    from edgecompress.models import packed, pixelscale
    from edgecompress.models.backend import keras

    layout = packed.output_layout(model)
    names = [n for n, _ in layout]
    if not layout:
        raise EdgeCompressError(f"Received an invalid value for `data`: it labels outputs {labelled} one by one "
                                f"(`y_train/<output>`), and model {model.name!r} has one output. Name its labels "
                                "`y_train` and `y_test`.")
    if task is not None:
        raise EdgeCompressError(f"Received an invalid value for `task`: {task!r}. A model of several outputs takes each "
                                "output's task from its labels (class ids or values); drop --task.")
    if output is not None and output not in names:
        raise EdgeCompressError(f"Received an invalid value for `output`: model {model.name!r} has no output "
                                f"{output!r}; its outputs are {names}. Pass one of them to --output.")
    outputs = []
    for (name, shape), tensor in zip(layout, packed.output_tensors(model)):
        if name not in labelled:
            raise EdgeCompressError(f"{data} has no `y_train/{name}`; a model of several outputs measured each needs "
                                    f"labels for each of its outputs ({', '.join(names)}).")
        y = read_array(data, f"y_train/{name}")  # only the labels: the examples are read once, by load_dataset
        width = int(np.prod(shape))
        ids = y.ndim == 1 and (np.issubdtype(y.dtype, np.integer) or bool(np.all(y == np.round(y))))
        head = keras_io._last_activation(keras.Model(model.inputs, tensor)) if ids else "values"
        classifies = ids and (head in ("softmax", "logits") and width > 1 or head == "sigmoid" and width == 1)
        outputs.append(tasks.Output(name, "classification" if classifies else "regression", width,
                                    head if classifies else "values"))
    judged = output or names[0]
    name = tasks.several_outputs_name(outputs, judged)
    dataset = load_dataset(data, keras_io.input_preprocessing(model, "unit"), seed=seed, task=name)
    logger.info("Outputs, each measured: %s; the limit holds on %r (--output names another)",
                ", ".join(f"{o.name} ({o.task}{', ' + o.head if o.task == 'classification' else ''})" for o in outputs),
                judged)
    if isinstance(dataset.preprocessing, Features):
        return UserModel(model, dataset, fmt, log)
    choice = pixelscale.choose_scale(model, dataset, requested=scale, seed=seed)  # on the judged output's metric
    dataset = dataclasses.replace(dataset, preprocessing=dataclasses.replace(dataset.preprocessing, scale=choice.scale))
    return UserModel(model, dataset, fmt, log, choice)


def _with_value_loss(dataset, path):
    """`dataset` with the value loss a model of values trains and distils by: the one the model at `path` was
    compiled with, mean absolute error or else mean squared error (`keras_io.saved_value_loss`)."""
    from edgecompress.lite.tasks import task

    if not task(dataset.task).outputs_values:
        return dataset
    loss = keras_io.saved_value_loss(path)
    logger.info("Trains and distils by %s (%s)", {"mse": "mean squared error", "mae": "mean absolute error"}[loss],
                "the model's own loss" if loss == "mae" else "the default; a model compiled with MAE keeps it")
    return dataclasses.replace(dataset, value_loss=loss)


def _other_task(model, dataset, fmt, log, scale) -> UserModel:
    """A model that is not a classifier, opened: its inputs fed as they are (features), or images at the scale
    asked for (`--scale`; `auto`: unit, since no top-1 can confirm a scale here)."""
    from edgecompress.lite.tasks import task

    t = task(dataset.task)
    if t.value_labels and tuple(model.output_shape[1:]) != (tuple(dataset.y_train.shape[1:]) or (1,)):
        raise EdgeCompressError(f"Model {model.name!r} outputs {tuple(model.output_shape[1:])} values and the "
                                f"labels have shape {tuple(dataset.y_train.shape[1:]) or (1,)} per "
                                "example; they must match (one label column per output unit).")
    logger.info("Task: %s, judged by %s%s", t.name, t.metric,
                " of the reconstruction error (the model outputs its input's shape)" if t.reconstructs else "")
    if not isinstance(dataset.preprocessing, Features):
        chosen = "unit" if scale == "auto" else scale
        dataset = dataclasses.replace(dataset, preprocessing=dataclasses.replace(dataset.preprocessing, scale=chosen))
        logger.info("Input: images at the %s scale%s", chosen,
                    "; pass --scale to change it" if scale == "auto" else " (--scale)")
    return UserModel(model, dataset, fmt, log)
