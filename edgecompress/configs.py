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
from typing import Any, ClassVar

from edgecompress.errors import EdgeCompressError


class Quantization(str, enum.Enum):
    """How the weights (and activations) of a `.tflite` are stored.

    - `none`: float32 weights and activations, the reference.
    - `dynamic`: int8 weights, float activations (dynamic range).
    - `float16`: float16 weights, float compute.
    - `int8`: full integer weights and activations, calibrated with a
      representative dataset.
    - `int16x8`: 16-bit activations, 8-bit weights, calibrated (`edgecompress.int16x8`).

    What each means to the converter is a row of `schemes.SCHEMES`.
    """

    NONE = "none"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT16X8 = "int16x8"


@dataclasses.dataclass(frozen=True)
class Scheme:
    """What one quantization scheme means, as data (a row of `schemes.SCHEMES`).

    Args:
        name: The `Quantization` value.
        optimize: Set the converter's `Optimize.DEFAULT`.
        supported_types: Converter `target_spec.supported_types`, by tf dtype name (`"float16"`).
        ops_set: The `tf.lite.OpsSet` that makes the file integer-only (`"TFLITE_BUILTINS_INT8"`), or None.
        needs_calibration: Needs a representative dataset.
        integer_only: Every op must be integer unless the variant allows float fallback (checked in the file).
        io_dtypes: The `io_dtype` values a variant of this scheme may ask for; the first is the default.
        kernels: Which kernels run it on a CPU, said beside its latency.
        reference_kernels: Its latency comes from TFLite's reference kernels, not XNNPACK.
        reference: The float reference of a build (the report's baseline when there are no stages).
        recover_with: What the quantization debugger's recovery offers when a file of this scheme
            loses more than `--max-accuracy-drop`: `"selective"` (its most sensitive layers in
            float) and other schemes by name.
        read_back: "module:function" that reads the ops left in float from the file.
        evaluate: "module:function" that measures its top-1 with the interpreter.
    """

    name: str
    optimize: bool = False
    supported_types: tuple[str, ...] = ()
    ops_set: str | None = None
    needs_calibration: bool = False
    integer_only: bool = False
    io_dtypes: tuple[str, ...] = ("float32",)
    kernels: str = "XNNPACK"
    reference_kernels: bool = False
    reference: bool = False
    recover_with: tuple[str, ...] = ()
    read_back: str = "edgecompress.inspect:float_ops"
    evaluate: str = "edgecompress.evaluation:evaluate_tflite"


class _Config:
    """Mixin for frozen dataclasses: dict/JSON round trip with strict keys."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, enum.Enum):
                v = v.value
            elif isinstance(v, _Config):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [x.to_dict() if isinstance(x, _Config) else x for x in v]
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


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise EdgeCompressError(message)


@dataclasses.dataclass(frozen=True)
class Preprocessing(_Config):
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
            _require(
                isinstance(v, int) and v > 0,
                f"Received an invalid value for `{name}`, expected a positive "
                f"integer. Received: {name}={v!r}",
            )
        _require(
            self.channels in (1, 3),
            "Received an invalid value for `channels`, expected 1 (grayscale) "
            f"or 3 (RGB). Received: channels={self.channels!r}",
        )
        _require(
            self.scale in self.SCALES,
            f"Received an invalid value for `scale`, expected one of "
            f"{list(self.SCALES)}. Received: scale={self.scale!r}",
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Config):
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
        _require(
            isinstance(self.epochs, int) and self.epochs >= 1,
            f"Received an invalid value for `epochs`, expected an integer >= 1. "
            f"Received: epochs={self.epochs!r}",
        )
        _require(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "Received an invalid value for `batch_size`, expected an integer "
            f">= 1. Received: batch_size={self.batch_size!r}",
        )
        _require(
            self.learning_rate > 0,
            "Received an invalid value for `learning_rate`, expected a positive "
            f"number. Received: learning_rate={self.learning_rate!r}",
        )
        _require(
            0 <= self.validation_fraction < 1,
            "Received an invalid value for `validation_fraction`, expected a "
            f"number in [0, 1). Received: validation_fraction={self.validation_fraction!r}",
        )
        _require(
            self.strategy in ("default", "mirrored", "multiworker"),
            "Received an invalid value for `strategy`, expected one of ['default', 'mirrored', 'multiworker']. "
            f"Received: strategy={self.strategy!r}",
        )


@dataclasses.dataclass(frozen=True)
class ModelSpec(_Config):
    """What a device needs to feed a model: preprocessing and labels."""

    preprocessing: Preprocessing
    class_names: tuple[str, ...]

    def __post_init__(self):
        if isinstance(self.preprocessing, dict):
            object.__setattr__(
                self, "preprocessing", Preprocessing.from_dict(self.preprocessing)
            )
        object.__setattr__(self, "class_names", tuple(self.class_names))
        _require(
            len(self.class_names) >= 2,
            "A model needs at least 2 classes. Received: "
            f"class_names={list(self.class_names)}",
        )


@dataclasses.dataclass(frozen=True)
class ConversionConfig(_Config):
    """One `.tflite` variant to produce from a Keras model.

    Args:
        name: Artifact name; the file is `<name>.tflite`.
        quantization: A `Quantization` (or its string value).
        io_dtype: For `int8`: `"int8"` for integer input and output tensors,
            `"float32"` to keep float I/O (quantize/dequantize ops are added
            inside the model). Ignored otherwise. Defaults to `"int8"`.
        float_fallback: For `int8`: allow float kernels for ops that have no
            int8 kernel instead of failing. Defaults to False.
        float_layers: For `int8`: Keras layer names to keep in float
            (selective quantization of sensitive layers, through TFLite's
            quantization debugger); needs `io_dtype="float32"`. Defaults to
            `()`.
    """

    name: str
    quantization: Quantization = Quantization.NONE
    io_dtype: str = "int8"
    float_fallback: bool = False
    float_layers: tuple[str, ...] = ()

    def __post_init__(self):
        try:
            object.__setattr__(self, "quantization", Quantization(self.quantization))
        except ValueError:
            raise EdgeCompressError(
                f"Received an invalid value for `quantization`, expected one of "
                f"{[q.value for q in Quantization]}. Received: quantization={self.quantization!r}"
            ) from None
        object.__setattr__(self, "float_layers", tuple(self.float_layers))
        _require(
            isinstance(self.name, str) and self.name and all(ch.isalnum() or ch in "-_." for ch in self.name),
            "Received an invalid value for `name`, expected letters, digits, '-', '_' "
            f"or '.'. Received: name={self.name!r}",
        )
        _require(
            self.io_dtype in ("int8", "int16", "float32"),
            "Received an invalid value for `io_dtype`, expected 'int8', 'int16' or 'float32' (which ones a scheme "
            f"takes: `schemes.SCHEMES`). Received: io_dtype={self.io_dtype!r}",
        )
        _require(
            not self.float_layers or (self.quantization is Quantization.INT8 and self.io_dtype == "float32"),
            f"Variant {self.name!r}: `float_layers` keeps layers of an int8 model in float, so it needs "
            "quantization='int8' and io_dtype='float32' (the float layers make float input and output). "
            f"Received: quantization={self.quantization.value!r}, io_dtype={self.io_dtype!r}",
        )


def float32() -> ConversionConfig:
    """The float32 reference: no quantization."""
    return ConversionConfig("float32", Quantization.NONE)


def dynamic_range() -> ConversionConfig:
    """int8 weights, float activations; no calibration data needed."""
    return ConversionConfig("dynamic", Quantization.DYNAMIC)


def float16() -> ConversionConfig:
    """float16 weights: half the size, float compute (GPU-friendly)."""
    return ConversionConfig("float16", Quantization.FLOAT16)


def int8_full() -> ConversionConfig:
    """Full integer: int8 weights, activations, input and output tensors.

    Every op must have an int8 kernel; what microcontrollers, Edge TPUs and
    NPUs need.
    """
    return ConversionConfig("int8", Quantization.INT8, io_dtype="int8")


def int8_float_io() -> ConversionConfig:
    """int8 inside, float32 input and output, float fallback allowed.

    The drop-in variant for code that feeds floats, and the fallback when an
    op has no int8 kernel.
    """
    return ConversionConfig("int8_float_io", Quantization.INT8, io_dtype="float32", float_fallback=True)


def default_conversions() -> tuple[ConversionConfig, ...]:
    return (float32(), dynamic_range(), float16(), int8_full(), int8_float_io())
