"""What a model is for, and how one number says how well it does it: the tasks, as data.

Each `Task` names its metric and computes it from a model's outputs, in
numpy alone (TF-free: the device runs it too). Every metric is a fraction
where higher is better, so a build's limit, selection, front and report
treat all tasks alike: `--max-accuracy-drop 1.0` is one point of top-1 for a
classifier and 0.01 of ROC-AUC for an anomaly detector.

- `classification`: top-1 of a softmax, logits or one-sigmoid-unit head
  (`numerics.labels`); labels are class ids.
- `regression`: R² (the coefficient of determination, 1 - SSE/SST: 1 is exact, 0 is predicting the mean) of
  one or several value outputs against float labels; trains and distils by mean squared error, or by mean
  absolute error where the model was compiled with it (`VALUE_LOSSES`).
- `multilabel`: several sigmoid units, each a label of its own (labels: one 0/1 column per unit), judged by
  the mean over the labels of each unit's ROC-AUC against its column; trains by binary cross-entropy and
  distils by mean squared error against the teacher's probabilities.
- `anomaly`: ROC-AUC of an anomaly score against labels 0 (normal) and 1
  (anomaly). The score is the reconstruction error (mean squared, per
  example) when the output has the input's shape (an autoencoder, MLPerf
  Tiny's anomaly-detection model), or else the model's one output unit (a
  score model). An autoencoder trains to reproduce its input, on normal
  examples.

Each task also splits its metric into one term per example whose mean is the metric (`Task.terms`): a
classifier's term is 1 where it is right and 0 where wrong; R²'s and ROC-AUC's are their first-order
(influence) terms. Two files' terms on the same examples give the standard error of the difference of their
metrics (`models.sanity.paired_standard_error`), which a search's limit keeps as its margin.

Example:

>>> import numpy as np
>>> task("anomaly").score(np.zeros((4, 2)), np.array([[0, 0], [0, .1], [1, 1], [2, 2]]), np.array([0, 0, 1, 1]))
1.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from edgecompress.errors import EdgeCompressError
from edgecompress.lite.numerics import labels
from edgecompress.lite.scores import (anomaly_auc, anomaly_auc_terms, multilabel_auc, multilabel_auc_terms, r2, r2_terms, top1, top1_terms)


# How a model of values (`Task.outputs_values`: a regression, an autoencoder) trains and is distilled: by its
# own saved loss where it is one of these (`keras_io.saved_value_loss`), else mean squared error.
VALUE_LOSSES = ("mse", "mae")


def check_value_loss(value_loss: str) -> str:
    """`value_loss` if it is one of `VALUE_LOSSES`, else an error naming them."""
    if value_loss not in VALUE_LOSSES:
        raise EdgeCompressError(f"Received an invalid value for `value_loss`, expected one of {list(VALUE_LOSSES)} "
                                f"(mean squared or mean absolute error). Received: value_loss={value_loss!r}")
    return value_loss


CHANCE_FACTOR = 1.5  # below 1.5x chance a classifier has learned nothing usable (pixelscale's check too)


@dataclasses.dataclass(frozen=True)
class Task:
    """One task: its name, its metric, and how the metric is computed.

    Attributes:
        name: The registry key (`--task`).
        metric: The metric's name in logs and reports ("top-1", "ROC-AUC").
        measure: `(x, outputs, y) -> float`: the metric of a model's `outputs` on inputs `x` against labels
            `y`, as a fraction where higher is better.
        per_example: `(x, outputs, y) -> (N,) array`: one term per example whose mean is the metric (a
            classifier's 1 right, 0 wrong; R²'s and ROC-AUC's influence terms), for paired comparisons.
        chance: The metric of a model that learned nothing, given the class count.
        floor: Below it (given the class count) a model has learned nothing usable: a stage that leaves its
            model there ends (`models.sanity.check_stage`).
        chance_is: What a model at chance does, for that message (`{n}`: the class count).
        compares_labels: Whether two files can be compared by the share of equal predicted labels
            (`agreement`).
        reconstructs: Whether a model of this task trains to output its input (an autoencoder) rather than
            labels.
        outputs_values: Whether its outputs are values (a reconstruction, a regression) rather than class
            scores: it trains and distils by mean squared error instead of cross-entropy and soft targets.
        value_labels: Whether its labels are values (floats, one column per output) rather than class ids.
        as_percent: How a report writes the metric: as a percentage (top-1) or as a fraction (ROC-AUC).
        multi_label: Whether each output unit is a label of its own (sigmoids, 0/1 label columns): trained by
            binary cross-entropy, distilled by mean squared error, compared unit by unit at p > 0.5.
        loss: The kind of its training and distillation losses, a row of `models.losses`: `"classes"`
            (cross-entropy by the head), `"labels"` (per sigmoid unit), `"values"` (mean squared or absolute
            error) or `"outputs"` (each output's own, summed).
    """

    name: str
    metric: str
    measure: Callable
    per_example: Callable
    chance: Callable
    floor: Callable
    compares_labels: bool = True
    reconstructs: bool = False
    outputs_values: bool = False
    value_labels: bool = False
    as_percent: bool = True
    chance_is: str = "{n} classes"
    multi_label: bool = False
    loss: str = "classes"

    @property
    def limit_units(self) -> str:
        """What one unit of `--max-accuracy-drop` (`--max-metric-drop`) is for this task's metric: a percentage
        point of top-1, or a hundredth of ROC-AUC or R²."""
        return "points" if self.as_percent else f"hundredths of {self.metric}"

    def score(self, x, outputs, y) -> float:
        """The metric of `outputs` (the model's, on inputs `x`) against labels `y`, as a fraction."""
        return self.measure(x, outputs, y)

    def terms(self, x, outputs, y) -> np.ndarray:
        """One term per example whose mean is the metric (`per_example`): two files' terms on the same examples
        give the paired standard error of their difference (`models.sanity.paired_standard_error`)."""
        return np.asarray(self.per_example(x, outputs, y), np.float64)

    def predictions(self, outputs):
        """What agreement between two files compares (class ids; for multi-label, each unit at p > 0.5), or
        None where there is no such thing."""
        if self.multi_label:
            return (np.asarray(outputs) > 0.5).astype(np.int64)
        return labels(outputs) if self.compares_labels else None

    def format(self, value) -> str:
        """`value` as the reports write it: "97.00%" top-1, "0.8412" ROC-AUC."""
        return f"{100 * value:.2f}%" if self.as_percent else f"{value:.4f}"

    def says(self, value) -> str:
        """The metric and its value, as a log line writes them: "top-1 97.00%", "ROC-AUC 0.8412"."""
        return f"{self.metric} {self.format(value)}"


TASKS = {t.name: t for t in (
    Task("classification", "top-1", top1, top1_terms, chance=lambda num_classes: 1.0 / max(num_classes, 2),
         floor=lambda num_classes: CHANCE_FACTOR / max(num_classes, 2)),
    # A ROC-AUC of one half ranks nothing; 1.5x chance would refuse a usable 0.70.
    Task("anomaly", "ROC-AUC", anomaly_auc, anomaly_auc_terms, chance=lambda num_classes: 0.5, floor=lambda num_classes: 0.55,
         compares_labels=False, reconstructs=True, outputs_values=True, as_percent=False,
         chance_is="scores that rank nothing", loss="values"),
    Task("multilabel", "mean ROC-AUC", multilabel_auc, multilabel_auc_terms, chance=lambda num_classes: 0.5,
         floor=lambda num_classes: 0.55,
         value_labels=True, as_percent=False, multi_label=True, chance_is="scores that rank nothing", loss="labels"),
    Task("regression", "R²", r2, r2_terms, chance=lambda num_classes: 0.0, floor=lambda num_classes: 0.05,
         compares_labels=False, outputs_values=True, value_labels=True, as_percent=False,
         chance_is="predicting the mean", loss="values"),
)}


@dataclasses.dataclass(frozen=True)
class Output:
    """One output of a model of several, as its labels and its metric see it.

    Attributes:
        name: The output's name (the layer that makes it); its labels are `y_train/<name>`, `y_test/<name>`.
        task: `classification` (labels: class ids, one column) or `regression` (labels: one float column per
            unit).
        width: How many numbers the output holds per example.
        head: For a classification output, its head (`keras_io.output_head`: softmax, logits, sigmoid).
    """

    name: str
    task: str
    width: int
    head: str = "softmax"

    @property
    def label_columns(self) -> int:
        return 1 if self.task == "classification" else self.width


OUTPUT_TASKS = ("classification", "regression")
_SEVERAL = "outputs"


def several_outputs_name(outputs, judged: str) -> str:
    """The task name of a model of several `outputs` (`Output`s) judged on the one named `judged`:
    `outputs[cls:classification:softmax:3,box:regression:values:4]@cls`. It is a string so it travels where
    every task name does (a build's options, `model_spec.json`, a device's eval data) and `task` reads it back.
    """
    parts = ",".join(f"{o.name}:{o.task}:{o.head}:{o.width}" for o in outputs)
    return f"{_SEVERAL}[{parts}]@{judged}"


@dataclasses.dataclass(frozen=True)
class SeveralOutputs(Task):
    """A model of several outputs: its outputs flattened one after the other into one row of scores, its labels
    one row of columns (`Output.label_columns` each), each output measured by its own task, and the metric of
    the one named `judged` the build's metric (what the limit, selection and the report's front read)."""

    outputs: tuple = ()
    judged: str = ""

    def _index(self) -> int:
        return [o.name for o in self.outputs].index(self.judged)

    def parts(self, outputs, y=None):
        """[(Output, its scores, its labels or None)] cut from packed `outputs` (N, sum of widths) and `y`."""
        out = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
        yy = None if y is None else np.asarray(y, np.float64).reshape(len(y), -1)
        res, a, b = [], 0, 0
        for o in self.outputs:
            res.append((o, out[:, a:a + o.width], None if yy is None else yy[:, b:b + o.label_columns]))
            a, b = a + o.width, b + o.label_columns
        if out.shape[1] != a or (yy is not None and yy.shape[1] != b):
            raise EdgeCompressError(f"A model of outputs {[o.name for o in self.outputs]} gives {a} numbers and "
                                    f"{b} label columns per example; received {out.shape[1]} and "
                                    f"{None if yy is None else yy.shape[1]}.")
        return res

    def _judged(self, outputs, y=None):
        o, out, yy = self.parts(outputs, y)[self._index()]
        return TASKS[o.task], out, (yy.reshape(-1) if yy is not None and o.task == "classification" else yy)

    def score(self, x, outputs, y) -> float:
        t, out, yy = self._judged(outputs, y)
        return t.score(x, out, yy)

    def terms(self, x, outputs, y) -> np.ndarray:
        t, out, yy = self._judged(outputs, y)
        return t.terms(x, out, yy)

    def predictions(self, outputs):
        t, out, _ = self._judged(outputs)
        return t.predictions(out)

    def group_names(self) -> tuple:
        """What a dataset of this task stratifies by (its calibration draw, `groups`): the judged output's
        classes, or the deciles of its first value."""
        o = self.outputs[self._index()]
        if o.task == "classification":
            return tuple(str(i) for i in range(max(o.width, 2)))
        return tuple(f"decile_{i}" for i in range(10))

    def groups(self, y) -> np.ndarray:
        """Each example's group among `group_names`: the judged output's class id, or its first value's decile."""
        o, _, yy = self.parts(np.zeros((len(y), sum(x.width for x in self.outputs))), y)[self._index()]
        v = yy[:, 0]
        if o.task == "classification":
            return v.astype(np.int64)
        return np.searchsorted(np.quantile(v, np.linspace(0, 1, 11)[1:-1]), v, side="right")

    def each(self, x, outputs, y) -> dict:
        """Every output's metric, by name: `{name: {"metric": "top-1", "value": 0.97}}`."""
        out = {}
        for o, scores, yy in self.parts(outputs, y):
            t = TASKS[o.task]
            out[o.name] = {"metric": t.metric,
                           "value": t.score(x, scores, yy.reshape(-1) if o.task == "classification" else yy)}
        return out


def says_each(outputs: dict) -> str:
    """Each output's metric (`SeveralOutputs.each`) as logs and reports write it: "cls top-1 97.00%, box R² 0.8123"."""
    by_metric = {t.metric: t for t in TASKS.values()}
    return ", ".join(f"{name} {by_metric[m['metric']].says(m['value'])}" for name, m in outputs.items())


def _several(name: str) -> SeveralOutputs:
    try:
        body, judged = name[len(_SEVERAL) + 1:].split("]@")
        outputs = []
        for part in body.split(","):
            out_name, out_task, head, width = part.rsplit(":", 3)
            outputs.append(Output(out_name, out_task, int(width), head))
    except ValueError:
        raise EdgeCompressError(f"Received an invalid value for `task`: {name!r} is not a task of several outputs "
                                "(outputs[NAME:TASK:HEAD:WIDTH,...]@NAME).") from None
    bad = [o.task for o in outputs if o.task not in OUTPUT_TASKS]
    if bad or judged not in [o.name for o in outputs]:
        raise EdgeCompressError(f"Received an invalid value for `task`: {name!r}: each output's task is one of "
                                f"{list(OUTPUT_TASKS)} and the judged one is among them.")
    o = next(o for o in outputs if o.name == judged)
    base = TASKS[o.task]
    n = o.width if o.task == "classification" and o.head != "sigmoid" else 2
    return SeveralOutputs(name, base.metric, base.measure, base.per_example, chance=lambda num_classes: base.chance(n),
                          floor=lambda num_classes: base.floor(n), compares_labels=base.compares_labels,
                          value_labels=True, as_percent=base.as_percent, chance_is=base.chance_is,
                          loss="outputs", outputs=tuple(outputs), judged=judged)


def task(name: str) -> Task:
    """The registered task `name` (or a model of several outputs' task, `several_outputs_name`); an unknown name is
    refused with the known ones."""
    if isinstance(name, str) and name.startswith(_SEVERAL + "["):
        return _several(name)
    if name not in TASKS:
        raise EdgeCompressError(f"Received an invalid value for `task`, expected one of {sorted(TASKS)}. "
                                f"Received: task={name!r}")
    return TASKS[name]
