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
import numbers
import re
import types
import typing
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
        hints = typing.get_type_hints(cls)
        for name, value in config.items():
            expected = _scalar_kinds(hints.get(name))
            if expected and not any(_is(value, k) for k in expected):
                said = " or ".join(_KIND_WORDS[k] for k in expected)
                raise EdgeCompressError(f"Received an invalid value for `{name}` of {cls.__name__}, expected {said}. "
                                        f"Received: {name}={value!r}")
        return cls(**config)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def json_schema(cls) -> dict:
        """A JSON Schema (draft 2020-12) of this config as `from_dict` takes it: each field's type, default and the
        docstring's word on it (`Args:`), no other key. Editors complete and check files against it."""
        hints = typing.get_type_hints(cls)
        docs = arg_docs(cls.__doc__ or "")
        props, required = {}, []
        for f in dataclasses.fields(cls):
            schema = type_schema(hints.get(f.name, Any))
            if f.name in docs:
                schema["description"] = docs[f.name]
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                required.append(f.name)
                default = dataclasses.MISSING
            if default is not dataclasses.MISSING and _plain(default) is not None:
                schema["default"] = _plain(default)
            props[f.name] = schema
        return {"title": cls.__name__, "description": (cls.__doc__ or "").strip().split("\n\n")[0],
                "type": "object", "properties": props, "additionalProperties": False,
                **({"required": required} if required else {})}


_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _scalar_kinds(t) -> tuple | None:
    """The scalar types a field annotated `t` takes (`int | None` -> (int, NoneType)), or None when it is not
    only scalars (a tuple, a dict, a config): those are checked by the config itself."""
    args = typing.get_args(t) if typing.get_origin(t) in (typing.Union, types.UnionType) else (t,)
    return tuple(args) if args and all(a in _KIND_WORDS for a in args) else None


def _is(value, kind) -> bool:
    """Whether `value` is of `kind`; numpy's scalars count as the numbers they are (`numbers` ABCs)."""
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return isinstance(value, kind) if kind is not type(None) else value is None


def _plain(value):
    """`value` as JSON would hold it, or None when it has no JSON form (a class, a function)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        return None if any(i is None for i in items) else items
    if isinstance(value, (str, int, float, bool, dict)) or value is None:
        return value
    return None


def type_schema(t) -> dict:
    """The JSON Schema of one annotated type: the scalars, `X | None`, tuples and lists, dicts, enums, configs."""
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(a) for a in typing.get_args(t)]}
    if t is type(None):
        return {"type": "null"}
    if t is bool:
        return {"type": "boolean"}
    if t is int:
        return {"type": "integer"}
    if t is float:
        return {"type": "number"}
    if t is str:
        return {"type": "string"}
    if t in (tuple, list) or origin in (tuple, list):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return {"type": "array", **({"items": type_schema(args[0])} if args else {})}
    if t is dict or origin is dict:
        return {"type": "object"}
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return {"enum": [m.value for m in t]}
    if isinstance(t, type) and issubclass(t, Config):
        return t.json_schema()
    return {}


def arg_docs(doc: str) -> dict[str, str]:
    """The `Args:` section of a Google-style docstring: each name (or comma-separated names) to its text."""
    out, name, lines, indent = {}, None, [], 0
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    for line in section.splitlines():
        m = re.match(r"^\s{4,8}(\w+(?:, \w+)*): (.*)$", line)
        if m and (name is None or len(line) - len(line.lstrip()) <= indent):
            if name:
                for n in name:
                    out[n] = " ".join(lines)
            name, lines, indent = m.group(1).split(", "), [m.group(2).strip()], len(line) - len(line.lstrip())
        elif name and line.strip() and not re.match(r"^\s*(Returns|Raises|Example)s?:", line):
            lines.append(line.strip())
        elif line.strip() and name:
            break
    if name:
        for n in name:
            out[n] = " ".join(lines)
    return out


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


HOLDOUT_FRACTION = 0.1  # of the training split, held out to watch each training run (`TrainConfig`)
LR_SCHEDULES = ("constant", "cosine")  # `TrainConfig.lr_schedule`


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How a model trains: the default teacher, and every training-time stage's epochs (`models.training.train`;
    each stage's config gives its own with `training(seed)`).

    Args:
        epochs: Passes over the training split. Defaults to 8.
        batch_size: Defaults to 64.
        learning_rate: Adam learning rate. Defaults to 1e-3.
        lr_schedule: `"constant"`, or `"cosine"`: the rate decays from
            `learning_rate` to 0 over every step of `epochs` (Keras'
            `CosineDecay`). Defaults to `"constant"`.
        validation_fraction: Share of the training split held out to watch
            overfitting (whole groups, when the data has them). Defaults to
            `HOLDOUT_FRACTION`, 0.1.
        patience: Stop when the held-out metric has not improved for this
            many epochs and keep the best epoch's weights (Keras'
            `EarlyStopping`). Defaults to None: all `epochs`.
        mixup: Mixup's Beta(a, a) parameter for the training batches, or 0
            for none; the distiller's train step blends them
            (`DistillConfig.mixup`). Defaults to 0.
        seed: Seeds Python, numpy and TensorFlow. Defaults to 0.
        strategy: `tf.distribute` strategy by name: `"default"`,
            `"mirrored"` or `"multiworker"` (see `distribute`). Defaults to
            `"default"`.
    """

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_fraction: float = HOLDOUT_FRACTION
    seed: int = 0
    strategy: str = "default"
    lr_schedule: str = "constant"
    patience: int | None = None
    mixup: float = 0.0

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
        require(self.lr_schedule in LR_SCHEDULES, f"Received an invalid value for `lr_schedule`, expected one of "
                f"{list(LR_SCHEDULES)}. Received: lr_schedule={self.lr_schedule!r}")
        require(self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                "Received an invalid value for `patience`, expected an integer >= 1 or null. "
                f"Received: patience={self.patience!r}")
        require(self.mixup >= 0, f"Received an invalid value for `mixup`, expected a number >= 0 (0: none). "
                f"Received: mixup={self.mixup!r}")


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
