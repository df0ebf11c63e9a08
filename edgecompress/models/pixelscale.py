"""Which pixel scale a model expects: read from its layers, then measured.

A model trained on [0, 1] pixels and fed 0..255 (or the reverse) still runs,
and is wrong on almost every image: a MobileNetV2 transfer model with a
leading `Rescaling(1/127.5, offset=-1)` gave 8.70% top-1 under the old
`unit` default, with exit 0. `choose_scale` reads the model's own
preprocessing layers (`Rescaling`, `Normalization`, with their parameters,
including those that came from inside a nested backbone), then measures the
float model on a few hundred training images under each candidate scale and
takes the best; a declared scale wins ties within measurement noise. When
even the best is near chance it stops before any stage runs.

Example:

>>> choice = choose_scale(model, dataset)   # dataset: uint8 pixels, any scale
>>> choice.scale, choice.reason
('raw', "Rescaling(scale=0.00784, offset=-1) maps raw pixels to [-1, 1]; ...")
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from edgecompress.errors import EdgeCompressError
from edgecompress.lite import tasks
from edgecompress.lite.numerics import labels
from edgecompress.models.sanity import CHANCE_FACTOR  # below it the model computes nothing useful on this data

logger = logging.getLogger(__name__)

# The pixel range each scale hands the model (see `preprocessing.to_model_input`).
RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0), "raw": (0.0, 255.0)}
# Accuracy differences below this many points on the sample are noise: the declared scale wins.
TIE_POINTS = 2.0


@dataclasses.dataclass(frozen=True)
class ScaleChoice:
    """The chosen scale, why, and each candidate's measured top-1 on the sample."""

    scale: str
    reason: str
    declared: str | None
    accuracy: dict
    sample: int

    def to_dict(self):
        return dataclasses.asdict(self)


def _preprocessing_layers(model):
    """The Rescaling/Normalization layers the input passes through before anything else."""
    from edgecompress.models.channels import inbound_layers

    producers = inbound_layers(model)
    inputs = {layer.name for layer in model.layers if type(layer).__name__ == "InputLayer"}
    out, current = [], None  # None: the model input
    while True:
        nxt = [layer for layer in model.layers if layer.name not in inputs and (
            producers.get(layer.name) == [current] if current else set(producers.get(layer.name, [])) <= inputs)]
        if len(nxt) != 1 or type(nxt[0]).__name__ not in ("Rescaling", "Normalization"):
            return out
        out.append(nxt[0])
        current = nxt[0].name


def _affine(layer, lo, hi):
    """The per-channel output range of one preprocessing layer for inputs in [lo, hi]."""
    cls = type(layer).__name__
    if cls == "Rescaling":
        a, b = np.asarray(layer.scale, dtype=np.float64), np.asarray(layer.offset, dtype=np.float64)
    else:  # Normalization: (x - mean) / sqrt(variance); inverted: x * sqrt(variance) + mean
        mean, var = _mean_var(layer)
        std = np.sqrt(np.maximum(var, 1e-7))
        a, b = (std, mean) if getattr(layer, "invert", False) else (1.0 / std, -mean / std)
    y1, y2 = a * lo + b, a * hi + b
    return np.minimum(y1, y2), np.maximum(y1, y2)


def _mean_var(layer):
    """A Normalization layer's mean and variance, adapted or passed to its constructor."""
    return (np.asarray(layer.mean, dtype=np.float64).reshape(-1), np.asarray(layer.variance, dtype=np.float64).reshape(-1))


def _describe(layer) -> str:
    if type(layer).__name__ == "Rescaling":
        return f"Rescaling(scale={float(np.mean(layer.scale)):.3g}, offset={float(np.mean(layer.offset)):.3g})"
    mean, var = _mean_var(layer)
    return f"Normalization(mean~{float(mean.mean()):.3g}, std~{float(np.sqrt(var).mean()):.3g})"


def declared_scale(model):
    """(scale, reason) from the model's leading preprocessing layers, or (None, reason) without any.

    The scale whose pixel range those layers map to a span closest to 1-2
    (what [0, 1], [-1, 1] or standardized inputs span) is the declared one.
    """
    layers = _preprocessing_layers(model)
    if not layers:
        return None, "the model has no Rescaling or Normalization layer at its input"
    scores, ranges = {}, {}
    for scale, (lo, hi) in RANGES.items():
        l, h = np.full(1, lo), np.full(1, hi)
        for layer in layers:
            l, h = _affine(layer, l, h)
        span = float(np.mean(h - l))
        ranges[scale] = (float(np.min(l)), float(np.max(h)))
        scores[scale] = abs(math.log(max(span, 1e-12) / 1.5))
    best = min(scores, key=scores.get)
    lo, hi = ranges[best]
    chain = " then ".join(_describe(layer) for layer in layers)
    return best, f"{chain} maps {best} pixels ({RANGES[best][0]:g}..{RANGES[best][1]:g}) to [{lo:.3g}, {hi:.3g}]"


def _sample(dataset, n, seed):
    idx = np.random.default_rng(seed).permutation(len(dataset.y_train))[:n]
    return dataset.x_train[idx], dataset.y_train[idx]


def choose_scale(model, dataset, *, requested: str = "auto", sample: int = 300, seed: int = 0) -> ScaleChoice:
    """Picks (or checks) the pixel scale for `model` on `dataset`'s training images.

    Args:
        model: A tf-keras classifier.
        dataset: Its data (`data.Dataset`, uint8 pixels).
        requested: `"auto"`, or a scale to check (a flag overrides the
            choice but is still measured). Defaults to `"auto"`.
        sample: Training images measured per candidate. Defaults to 300.
        seed: Seeds the sample. Defaults to 0.

    Raises:
        EdgeCompressError: when the best (or requested) scale is below 1.5x
            chance, naming the likely causes and the flags.
    """
    from edgecompress.data.preprocessing import to_model_input

    declared, why = declared_scale(model)
    x, y = _sample(dataset, sample, seed)
    candidates = list(RANGES) if requested == "auto" else [requested]
    accuracy = {}
    # A model of several outputs is measured by its judged output's metric (`lite.tasks.SeveralOutputs`).
    several = tasks.task(dataset.task) if isinstance(tasks.task(dataset.task), tasks.SeveralOutputs) else None
    for scale in candidates:
        spec = dataclasses.replace(dataset.preprocessing, scale=scale)
        xin = to_model_input(x, spec)
        out = model.predict(xin, batch_size=128, verbose=0)
        accuracy[scale] = float(several.score(xin, out, y) if several else (labels(out) == y).mean())
    best = max(accuracy, key=accuracy.get)
    if requested != "auto":
        chosen, reason = requested, f"--scale {requested} was passed"
    elif declared is not None and 100 * (accuracy[best] - accuracy[declared]) <= TIE_POINTS:
        chosen, reason = declared, why
    else:
        chosen = best
        reason = f"it measured best ({why})" if declared is None else (
            f"it measured best, although {why} (the model's layers point to {declared})")
    measured = ", ".join(f"{s} {100 * a:.1f}%" for s, a in accuracy.items())
    chance = several.chance(0) if several else 1.0 / dataset.num_classes
    if accuracy[chosen] < (several.floor(0) if several else CHANCE_FACTOR * chance):
        raise EdgeCompressError(
            f"The model gets {100 * accuracy[chosen]:.1f}% top-1 on {len(y)} training images (chance is "
            f"{100 * chance:.1f}%; measured: {measured}), before any compression. Likely causes: the pixel scale "
            "(pass --scale unit, symmetric or raw), the class-folder order differing from the model's output order "
            "(folders are sorted by name), RGB against grayscale input, or mean/BGR preprocessing (as in "
            "keras.applications `preprocess_input` for ResNet/VGG) that these scales cannot express: put it "
            "inside the model as Rescaling/Normalization layers.")
    logger.info("Pixel scale: %s, because %s (top-1 on %d training images: %s)", chosen, reason, len(y), measured)
    return ScaleChoice(scale=chosen, reason=reason, declared=declared, accuracy=accuracy, sample=int(len(y)))

