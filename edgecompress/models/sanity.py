"""Numbers that cannot be true stop the branch that made them, with the likely cause.

A build reports what it measured; some measurements are not results but
symptoms: a stage whose model is at chance, NaN in a model's weights, a
float32 `.tflite` far from the Keras model it was converted from. Each check
raises `ImplausibleResult` naming the likely cause. In the closed loop a
failing check ends that trial (the other branches go on); in a fixed recipe
it ends the build (exit 2), since every number after it would be wrong too.
A compressed file far above the model it came from is a warning
(`suspect_gain`): it can be true.

Example:

>>> check_stage("distill", 0.10, num_classes=10)
Traceback (most recent call last):
...
edgecompress.models.sanity.ImplausibleResult: After distill the model's top-1 is 10.00%, at chance ...
"""

from __future__ import annotations

import math

import numpy as np

from edgecompress.errors import EdgeCompressError
from edgecompress.lite import tasks

from edgecompress.lite.tasks import CHANCE_FACTOR  # noqa: E402,F401  (pixelscale's check reads it here)
ABOVE_POINTS = 15.0  # a compressed file this many points above its source (and Z standard errors) is worth a warning
Z = 4.0

# Per stage kind, what usually puts a model at chance after it.
STAGE_CAUSES = {
    "distill": "the student did not learn in its epochs (too narrow for this data, too few images, or the "
               "learning rate), or the loss misread the model's head (softmax, logits, one sigmoid unit)",
    "prune": "more sparsity than this model can lose (lower final_sparsity), or too few fine-tuning epochs",
    "factorize": "ranks too small for this model's layers (raise energy or ratio), or no fine-tuning",
    "cluster": "too few clusters for this model's kernels (raise number_of_clusters)",
}


class ImplausibleResult(EdgeCompressError):
    """A measurement that cannot be a result; the message names the likely cause (exit code 2)."""


def standard_error(accuracy: float, n: int) -> float:
    """The binomial standard error of a top-1 measured on `n` images, as a fraction."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(n, 1))


def clustered_se(d, groups=None) -> float:
    """The standard error of `mean(d)`: over examples, or cluster-robust over `groups` (CR1: the sum of each
    group's centred total squared, times G / (G - 1), over n squared). Infinite with one group: one group
    measures nothing of how another would fare.

    >>> clustered_se([1.0, 0.0, 1.0, 0.0])
    0.25
    >>> clustered_se([1.0, 1.0, 0.0, 0.0], groups=["a", "a", "b", "b"])
    0.5
    """
    d = np.asarray(d, np.float64).reshape(-1)
    n = len(d)
    if n == 0:
        return 0.0
    if groups is None:
        return math.sqrt(max(float(d.var()), 0.0) / n)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    g = int(codes.max()) + 1
    if g < 2:
        return math.inf
    totals = np.bincount(codes, weights=d - d.mean(), minlength=g)
    return math.sqrt(g / (g - 1) * float((totals ** 2).sum())) / n


def interval_counts(count: int, groups: int | None) -> str:
    """What an error bar counts, in words: examples in groups, or examples taken as independent."""
    return (f"{count} examples in {groups} groups (the interval counts groups)" if groups is not None else
            f"{count} examples, assumed independent (no groups were given or found)")


def paired_standard_error(a_terms, b_terms, groups=None) -> float:
    """The standard error of the difference in a metric of two files measured on the same examples, from
    their per-example terms (`lite.tasks.Task.terms`; for top-1, which images each got right), as a fraction:
    only the examples the two treat differently move it (for top-1, one right and the other wrong), so it is
    much smaller than two independent measurements' errors when the files agree. For ROC-AUC it is DeLong's
    paired error; for R², that of the difference of squared errors. With `groups` (one id per example), it is
    cluster-robust over them (`clustered_se`): it counts groups, not examples.

    >>> paired_standard_error([1, 1, 0, 0], [1, 1, 0, 0])
    0.0
    """
    return clustered_se(np.asarray(a_terms, np.float64) - np.asarray(b_terms, np.float64), groups)


def limit_verdict(drop: float, margin: float, limit: float, margin_se: float) -> str:
    """What the limit says of a file `drop` points below the model, with `margin` points of margin: kept
    (selectable), within it but not by its margin (not selectable, though a ladder climbs from it), or
    dropped."""
    if drop + margin <= limit:
        return f"within the limit (-{limit:g})" + (f" by its margin of {margin:.2f}" if margin else "") + ": kept"
    if drop <= limit:
        return (f"within the limit (-{limit:g}) but not by its margin of {margin:.2f} ({margin_se:g} paired "
                "standard error): not selectable")
    return f"over the limit (-{limit:g}): dropped"


def check_stage(stage: str, accuracy, *, num_classes: int, model=None, task: str = "classification") -> None:
    """Raises when a stage's model is at chance (below its task's floor, `lite.tasks`: for a classifier
    `CHANCE_FACTOR` x chance) or holds NaN or infinite weights."""
    if model is not None:
        bad = [w.name for w in model.weights if not np.isfinite(np.asarray(w)).all()]
        if bad:
            raise ImplausibleResult(
                f"After {stage} the model holds NaN or infinite weights ({', '.join(bad[:3])}"
                f"{'...' if len(bad) > 3 else ''}): training diverged. Likely causes: a learning rate too high "
                "for this model, or inputs at the wrong scale.")
    if accuracy is None:
        return
    t = tasks.task(task)
    chance = t.chance(num_classes)
    if not math.isfinite(accuracy) or accuracy < t.floor(num_classes):
        what = t.chance_is.format(n=num_classes)
        raise ImplausibleResult(
            f"After {stage} the model's {t.metric} is {t.format(accuracy)}, at chance ({t.format(chance)} for "
            f"{what}): every file made from it would be too. Likely cause: "
            f"{STAGE_CAUSES.get(stage, 'this stage broke the model')}.")


def suspect_gain(name: str, accuracy: float, source_accuracy: float, n: int, *, source: str = "the model") -> str | None:
    """A warning when a file scores far above the model it came from (`ABOVE_POINTS` and `Z` standard errors
    of the difference), or None. Not an error: an under-trained model gains that much when its students and
    fine-tunes train on (the letters example of `examples.py`: +21 points, measured); but the same sign is
    what a model measured on inputs it does not expect shows, once its students learn those inputs."""
    gap = accuracy - source_accuracy
    se = math.sqrt(standard_error(accuracy, n) ** 2 + standard_error(source_accuracy, n) ** 2)
    if 100 * gap > ABOVE_POINTS and (se == 0 or gap / se > Z):
        return (f"{name} scores {100 * accuracy:.2f}% top-1, {100 * gap:.2f} points above {source} it came from "
                f"({100 * source_accuracy:.2f}%, on the same {n} images). Either the model is under-trained and the "
                "stages trained it further, or it is measured here on inputs it does not expect (pixel scale, "
                "channels, class order) and its students learned them: if it scored higher where you trained it, "
                "check `--scale` and the class folders.")
    return None


def check_float_file(keras_metric: float, file_accuracy: float, n: int, *, points: float = 2.0) -> None:
    """Raises when the model's own float32 `.tflite` differs from the Keras model's top-1 on the same images by
    more than `points` and `Z` standard errors: the conversion, not the compression, changed the model."""
    gap = file_accuracy - keras_metric
    se = math.sqrt(standard_error(keras_metric, n) ** 2 + standard_error(file_accuracy, n) ** 2)
    if abs(100 * gap) > points and (se == 0 or abs(gap) / se > Z):
        raise ImplausibleResult(
            f"The model's own float32 .tflite scores {100 * file_accuracy:.2f}% but the Keras model "
            f"{100 * keras_metric:.2f}% on the same {n} images: the conversion changed what it computes, so "
            "no compressed file can be judged against it. Likely causes: an op the converter or the translation "
            "to tf-keras computes differently (run `invoke check-model`), or a training-only layer "
            "(Dropout, BatchNormalization) left in training mode.")
