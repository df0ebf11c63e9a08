"""Typed, frozen configuration objects that round-trip to JSON.

Every artifact carries the exact configs that made it, so each config
validates in `__post_init__`, serializes with `to_dict()` and comes back with
`from_dict()`; unknown keys are refused with the list of valid ones.

This module, like `preprocessing`, `runtime` and `bench`, imports nothing
from TensorFlow.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from typing import Any, ClassVar

from edgecompress.errors import EdgeCompressError


class Config:
    """Mixin for frozen dataclasses: dict/JSON round trip with strict keys."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, Config):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [x.to_dict() if isinstance(x, Config) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, config: dict[str, Any]):
        if not isinstance(config, dict):
            raise EdgeCompressError(
                f"Expected a mapping for {cls.__name__}, received: {config!r}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config) - set(names))
        if unknown:
            raise EdgeCompressError(
                f"Unknown parameter(s) {unknown} for {cls.__name__}. "
                f"Valid parameters: {names}"
            )
        return cls(**config)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def require(cond: bool, message: str) -> None:
    if not cond:
        raise EdgeCompressError(message)


@dataclasses.dataclass(frozen=True)
class Preprocessing(Config):
    """How raw images become model inputs, identical everywhere.

    The same spec is applied in training, calibration, evaluation and on the
    device; it is saved next to every model as `model_spec.json`.

    Args:
        height: Input height in pixels. Defaults to 28.
        width: Input width in pixels. Defaults to 28.
        channels: 1 (grayscale) or 3 (RGB). Defaults to 1.
        scale: `"unit"` maps 0..255 to [0, 1], `"symmetric"` to [-1, 1],
            `"raw"` keeps 0..255 as float. Defaults to `"unit"`.
    """

    height: int = 28
    width: int = 28
    channels: int = 1
    scale: str = "unit"

    SCALES: ClassVar[tuple[str, ...]] = ("unit", "symmetric", "raw")

    def __post_init__(self):
        for name in ("height", "width"):
            v = getattr(self, name)
            require(
                isinstance(v, int) and v > 0,
                f"Received an invalid value for `{name}`, expected a positive "
                f"integer. Received: {name}={v!r}",
            )
        require(
            self.channels in (1, 3),
            "Received an invalid value for `channels`, expected 1 (grayscale) "
            f"or 3 (RGB). Received: channels={self.channels!r}",
        )
        require(
            self.scale in self.SCALES,
            f"Received an invalid value for `scale`, expected one of "
            f"{list(self.SCALES)}. Received: scale={self.scale!r}",
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclasses.dataclass(frozen=True)
class Features(Config):
    """Model inputs that are not images: numbers of one fixed shape (MFCCs, sensor windows, tabular rows).

    They reach the model as they are, in training, calibration, evaluation and on the device: no pixel
    scaling, no resizing (`to_model_input` keeps them as float32, as the `raw` scale does).

    Args:
        shape: The input's shape without the batch dimension, e.g. `(49, 10, 1)`.
        inputs: For a model of several inputs, each input's name and shape, in the order one packed row holds
            them (`lite.inputs`); `shape` is then `(total width,)`. Defaults to `()`: one input.
    """

    shape: tuple[int, ...]
    kind: str = "features"
    inputs: tuple = ()

    scale: ClassVar[str] = "raw"  # what `to_model_input` applies: nothing

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.shape))
        require(len(self.shape) >= 1 and all(isinstance(d, int) and d > 0 for d in self.shape),
                f"Received an invalid value for `shape`, expected positive integers. Received: shape={self.shape!r}")
        require(self.kind == "features", f"Received an invalid value for `kind`, expected 'features'. "
                                          f"Received: kind={self.kind!r}")
        if self.inputs:  # (name, shape) pairs, from JSON lists too; `lite.inputs.check_layout` checks the rest
            layout = tuple((str(name), tuple(int(d) for d in shape)) for name, shape in self.inputs)
            object.__setattr__(self, "inputs", layout)
            width = sum(math.prod(shape) for _, shape in layout)
            require(self.shape == (width,), f"Received an invalid value for `shape`: inputs {layout} pack into "
                                            f"rows of {width} numbers. Received: shape={self.shape!r}")

    def to_dict(self) -> dict:
        out = super().to_dict()
        if not self.inputs:
            del out["inputs"]  # a one-input spec reads as it always did (model_spec.json, cache keys)
        else:
            out["inputs"] = [[n, list(s)] for n, s in self.inputs]
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape


def input_spec(config: dict):
    """A saved input spec (`model_spec.json`'s `preprocessing`): `Features` when it says so, else `Preprocessing`."""
    return Features.from_dict(config) if config.get("kind") == "features" else Preprocessing.from_dict(config)


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How the default teacher is trained.

    Args:
        epochs: Passes over the training split. Defaults to 8.
        batch_size: Defaults to 64.
        learning_rate: Adam learning rate. Defaults to 1e-3.
        validation_fraction: Share of the training split held out to watch
            overfitting. Defaults to 0.1.
        seed: Seeds Python, numpy and TensorFlow. Defaults to 0.
        strategy: `tf.distribute` strategy by name: `"default"`,
            `"mirrored"` or `"multiworker"` (see `distribute`). Defaults to
            `"default"`.
    """

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    seed: int = 0
    strategy: str = "default"

    def __post_init__(self):
        require(
            isinstance(self.epochs, int) and self.epochs >= 1,
            f"Received an invalid value for `epochs`, expected an integer >= 1. "
            f"Received: epochs={self.epochs!r}",
        )
        require(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "Received an invalid value for `batch_size`, expected an integer "
            f">= 1. Received: batch_size={self.batch_size!r}",
        )
        require(
            self.learning_rate > 0,
            "Received an invalid value for `learning_rate`, expected a positive "
            f"number. Received: learning_rate={self.learning_rate!r}",
        )
        require(
            0 <= self.validation_fraction < 1,
            "Received an invalid value for `validation_fraction`, expected a "
            f"number in [0, 1). Received: validation_fraction={self.validation_fraction!r}",
        )
        require(
            self.strategy in ("default", "mirrored", "multiworker"),
            "Received an invalid value for `strategy`, expected one of ['default', 'mirrored', 'multiworker']. "
            f"Received: strategy={self.strategy!r}",
        )


@dataclasses.dataclass(frozen=True)
class ModelSpec(Config):
    """What a device needs to feed a model and read it: preprocessing, labels, and the task (`lite.tasks`:
    what the labels mean and what is measured)."""

    preprocessing: Preprocessing | Features
    class_names: tuple[str, ...]
    task: str = "classification"

    def __post_init__(self):
        if isinstance(self.preprocessing, dict):
            object.__setattr__(self, "preprocessing", input_spec(self.preprocessing))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        least = 1 if self.task == "regression" else 2  # a regression's names are its outputs
        require(
            len(self.class_names) >= least,
            f"A model needs at least {least} {'outputs' if least == 1 else 'classes'}. Received: "
            f"class_names={list(self.class_names)}",
        )
