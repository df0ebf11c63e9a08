"""Quantization schemes, in one place: the `Quantization` enum, what each scheme means (its `Scheme` row),
the variants a recipe names, and the `ConversionConfig` a variant is.

A row holds the converter settings (optimizations, supported types, the ops
set that makes it integer-only), the I/O dtypes a variant may ask for (the
first is the default), whether it needs calibration data, whether every op
must be integer, which kernels run it, and the function that reads a file of
it back. Callers ask the row (`scheme("int8").needs_calibration`), never
compare names. In the spirit of AI Edge Quantizer's named recipes: `int16x8`
is the same converter with other widths, one row.

A new scheme is one row in `SCHEMES`, one `Quantization` value and, if a
recipe should name it, one builder in `VARIANTS`.

Example:

>>> scheme("int8").ops_set
'TFLITE_BUILTINS_INT8'
>>> scheme("int16x8").reference_kernels
True
>>> conversion({"name": "i16", "quantization": "int16x8"}).io_dtype
'float32'
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Callable

from edgecompress.configs import Config, require
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.reader import float_ops


class Quantization(str, enum.Enum):
    """How the weights (and activations) of a `.tflite` are stored.

    - `none`: float32 weights and activations, the reference.
    - `dynamic`: int8 weights, float activations (dynamic range).
    - `float16`: float16 weights, float compute.
    - `int8`: full integer weights and activations, calibrated with a
      representative dataset.
    - `int16x8`: 16-bit activations, 8-bit weights, calibrated (its row below says why it is slow).
    - `int4`: int4 weights (a scale per output channel), float activations: half a dynamic-range file's
      weight bytes (LiteRT Quantizer, `quantize.aeq`).
    - `int4_block32`: int4 weights with a scale per block of 32 values: finer scales, more bytes of them.
    - `int4_int8`: int4 weights, int8 activations, calibrated.

    What each means to the converter is a row of `SCHEMES`.
    """

    NONE = "none"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT16X8 = "int16x8"
    INT4 = "int4"
    INT4_BLOCK32 = "int4_block32"
    INT4_INT8 = "int4_int8"


@dataclasses.dataclass(frozen=True)
class Scheme:
    """What one quantization scheme means, as data (a row of `SCHEMES`).

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
        read_back: Reads back from the converted bytes the ops left in float
            (`edgecompress.lite.reader.float_ops`); an integer-only file with any is refused.
        rewrites: Graph rewrites (`quantize.rewrites.REWRITES`, by name) applied to the model before it
            converts: the same function in the form this scheme's kernels run fastest.
        int8_weights: Its kernels are stored as int8, with a scale per output channel or, for a variant
            with `per_channel=False`, one per kernel.
        aeq_recipe: A LiteRT Quantizer recipe (`quantize.aeq.RECIPES`) applied to the float32 file, for a
            scheme TensorFlow's converter does not make (int4 weights); None for the converter's own.
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
    read_back: Callable[[bytes], list] = float_ops
    rewrites: tuple[str, ...] = ()
    int8_weights: bool = False
    aeq_recipe: str | None = None


SCHEMES: dict[str, Scheme] = {
    "none": Scheme("none", reference=True, kernels="XNNPACK (float)"),
    "dynamic": Scheme("dynamic", optimize=True, kernels="XNNPACK (dynamic-range int8 weights)", int8_weights=True),
    "float16": Scheme("float16", optimize=True, supported_types=("float16",), kernels="XNNPACK (float16 weights, float compute)"),
    "int8": Scheme("int8", optimize=True, ops_set="TFLITE_BUILTINS_INT8", needs_calibration=True, integer_only=True,
                   io_dtypes=("int8", "float32"), kernels="XNNPACK (int8)", recover_with=("selective", "int16x8"),
                   rewrites=("unfused_hard_swish",), int8_weights=True),
    # 16-bit activations, 8-bit weights: TFLite's EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 ops
    # set, calibrated with the same representative dataset. The finer activations keep accuracy where int8's 256
    # levels lose it (wide activation ranges, regression outputs), for about int8's size. The catch is speed:
    # XNNPACK has no int16x8 kernels, so it runs on TFLite's reference kernels; the report says so beside its
    # latency. The int8 recovery (`--max-accuracy-drop`) offers it when int8 loses too much.
    "int16x8": Scheme("int16x8", optimize=True, ops_set="EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
                      needs_calibration=True, integer_only=True, io_dtypes=("float32", "int16"),
                      kernels="TFLite reference kernels (XNNPACK has none for int16x8)", reference_kernels=True,
                      int8_weights=True),
    # int4 weights by LiteRT Quantizer on the float32 file (TensorFlow's converter stops at int8): half the
    # weight bytes of int8. On the bundled teacher, 217,632 file bytes against the dynamic int8 file's 428,400
    # (`docs/results/int4.json`).
    "int4": Scheme("int4", kernels="XNNPACK (dynamic-range int4 weights)", aeq_recipe="dynamic_wi4_afp32"),
    "int4_block32": Scheme("int4_block32", kernels="XNNPACK (dynamic-range int4 weights, a scale per 32)",
                           aeq_recipe="dynamic_wi4b32_afp32"),
    "int4_int8": Scheme("int4_int8", needs_calibration=True, kernels="XNNPACK (int4 weights, int8 activations)",
                        aeq_recipe="static_wi4_ai8"),
}


@dataclasses.dataclass(frozen=True)
class ConversionConfig(Config):
    """One `.tflite` variant to produce from a Keras model.

    Args:
        name: Artifact name; the file is `<name>.tflite`.
        quantization: A `Quantization` (or its string value).
        io_dtype: The type of the input and output tensors, one of the
            scheme's `io_dtypes`: for `int8`, `"int8"` (integer I/O) or
            `"float32"` (quantize/dequantize ops are added inside the model);
            for `int16x8`, `"float32"` or `"int16"`; float for the others.
            Defaults to the scheme's first (`scheme(q).io_dtypes[0]`).
        float_fallback: For `int8`: allow float kernels for ops that have no
            int8 kernel instead of failing. Defaults to False.
        float_layers: For `int8`: Keras layer names to keep in float
            (selective quantization of sensitive layers, through TFLite's
            quantization debugger); needs `io_dtype="float32"`. Defaults to
            `()`.
        per_channel: Quantize each kernel with a scale per output channel (the converter's default) or,
            False, one scale per kernel (`int8_per_tensor`). Per tensor, a file stores one float scale and
            zero point per kernel instead of one per channel (and per bias): a smaller file, gzipped most
            of all, for some accuracy, which a build measures. For a scheme of int8 weights
            (`Scheme.int8_weights`). Defaults to True.
        int4_share: For `int4`: at least this share of the weights (by count) stored as int4, in the layers
            least sensitive to it as measured on the calibration samples (`quantize.sensitivity`); the other
            layers keep int8 weights. Defaults to None: every layer int4, nothing measured.
    """

    name: str
    quantization: Quantization = Quantization.NONE
    io_dtype: str | None = None
    float_fallback: bool = False
    float_layers: tuple[str, ...] = ()
    per_channel: bool = True
    int4_share: float | None = None

    def __post_init__(self):
        try:
            object.__setattr__(self, "quantization", Quantization(self.quantization))
        except ValueError:
            raise EdgeCompressError(
                f"Received an invalid value for `quantization`, expected one of "
                f"{[q.value for q in Quantization]}. Received: quantization={self.quantization!r}"
            ) from None
        object.__setattr__(self, "float_layers", tuple(self.float_layers))
        if self.io_dtype is None:  # what the scheme makes, not int8's default whatever the scheme
            object.__setattr__(self, "io_dtype", scheme(self.quantization).io_dtypes[0])
        require(
            isinstance(self.name, str) and self.name and all(ch.isalnum() or ch in "-_." for ch in self.name),
            "Received an invalid value for `name`, expected letters, digits, '-', '_' "
            f"or '.'. Received: name={self.name!r}",
        )
        require(
            self.io_dtype in ("int8", "int16", "float32"),
            "Received an invalid value for `io_dtype`, expected 'int8', 'int16' or 'float32' (which ones a scheme "
            f"takes: `SCHEMES`). Received: io_dtype={self.io_dtype!r}",
        )
        require(
            not self.float_layers or (self.quantization is Quantization.INT8 and self.io_dtype == "float32"),
            f"Variant {self.name!r}: `float_layers` keeps layers of an int8 model in float, so it needs "
            "quantization='int8' and io_dtype='float32' (the float layers make float input and output). "
            f"Received: quantization={self.quantization.value!r}, io_dtype={self.io_dtype!r}",
        )
        require(
            self.per_channel is True or (self.per_channel is False and scheme(self.quantization).int8_weights
                                         and not self.float_layers),
            f"Variant {self.name!r}: `per_channel=False` (one scale per kernel) is for a scheme of int8 weights "
            f"({', '.join(n for n, r in SCHEMES.items() if r.int8_weights)}) without `float_layers`. Received: "
            f"quantization={self.quantization.value!r}, per_channel={self.per_channel!r}, "
            f"float_layers={list(self.float_layers)}",
        )

        require(
            self.int4_share is None or (self.quantization is Quantization.INT4 and isinstance(self.int4_share, (int, float))
                                        and not isinstance(self.int4_share, bool) and 0 < self.int4_share <= 1),
            f"Variant {self.name!r}: `int4_share` is the share of the weights an `int4` file stores as int4, a "
            f"number in (0, 1]. Received: quantization={self.quantization.value!r}, int4_share={self.int4_share!r}",
        )

    def to_dict(self) -> dict:
        # A variant's dict (and so its cache key and provenance) is what it was before `per_channel` and
        # `int4_share` were fields, where it does not use them.
        out = super().to_dict()
        if self.per_channel:
            del out["per_channel"]
        if self.int4_share is None:
            del out["int4_share"]
        return out


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


def int8_per_tensor() -> ConversionConfig:
    """Full integer with one scale per kernel, not per output channel: smaller, for some accuracy.

    The file stores a scale and a zero point per kernel rather than per channel and per bias (on MLPerf
    Tiny's keyword spotter at half width, 7 KB of a 24 KB file), and it gzips smaller. Its accuracy is
    measured like any file's; kernels whose channels differ most in range lose the most.
    """
    return ConversionConfig("int8_per_tensor", Quantization.INT8, io_dtype="int8", per_channel=False)


def dynamic_per_tensor() -> ConversionConfig:
    """Dynamic range with one scale per kernel (`int8_per_tensor`'s saving, float activations)."""
    return ConversionConfig("dynamic_per_tensor", Quantization.DYNAMIC, per_channel=False)


def int8_float_io() -> ConversionConfig:
    """int8 inside, float32 input and output, float fallback allowed.

    The drop-in variant for code that feeds floats, and the fallback when an
    op has no int8 kernel.
    """
    return ConversionConfig("int8_float_io", Quantization.INT8, io_dtype="float32", float_fallback=True)


def int4() -> ConversionConfig:
    """int4 weights with a scale per output channel, float activations (LiteRT Quantizer): the smallest file
    a CPU runs at float accuracy's cost of one weight rounding."""
    return ConversionConfig("int4", Quantization.INT4)


def int4_mixed(share: float):
    """int4 weights in the layers least sensitive to them, holding at least `share` of the weights; int8 in the rest."""
    def variant() -> ConversionConfig:
        return ConversionConfig(f"int4_mixed{round(100 * share)}", Quantization.INT4, int4_share=share)

    variant.__doc__ = f"int4 weights in the least sensitive layers holding {share:.0%} or more of the weights, int8 in the rest."
    return variant


def int4_block32() -> ConversionConfig:
    """int4 weights with a scale per block of 32 values (finer than per channel), float activations."""
    return ConversionConfig("int4_block32", Quantization.INT4_BLOCK32)


def int4_int8() -> ConversionConfig:
    """int4 weights per channel and int8 activations, calibrated; float32 input and output."""
    return ConversionConfig("int4_int8", Quantization.INT4_INT8)


def int16x8() -> ConversionConfig:
    """int16 activations and int8 weights inside, float32 input and output."""
    return ConversionConfig("int16x8", Quantization.INT16X8, io_dtype="float32")


# The variants a recipe names ("quantize": ["float32", "int8", ...]): name -> builder.
VARIANTS: dict[str, Callable[[], ConversionConfig]] = {
    "float32": float32,
    "dynamic": dynamic_range,
    "dynamic_per_tensor": dynamic_per_tensor,
    "float16": float16,
    "int8": int8_full,
    "int8_float_io": int8_float_io,
    "int8_per_tensor": int8_per_tensor,
    "int16x8": int16x8,
    "int4": int4,
    "int4_block32": int4_block32,
    "int4_int8": int4_int8,
    "int4_mixed50": int4_mixed(0.5),
    "int4_mixed75": int4_mixed(0.75),
    "int4_mixed90": int4_mixed(0.9),
}
DEFAULT_VARIANTS = ("float32", "dynamic", "float16", "int8", "int8_float_io")  # a recipe that names none


def scheme(name) -> Scheme:
    """The row of a `Quantization` (or its value)."""
    key = name.value if isinstance(name, Quantization) else str(name)
    if key not in SCHEMES:
        raise EdgeCompressError(f"Unknown quantization scheme {key!r}. Valid schemes: {sorted(SCHEMES)}.")
    return SCHEMES[key]


def check(config: ConversionConfig) -> ConversionConfig:
    """Refuses a variant whose I/O dtype its scheme cannot make; returns it."""
    row = scheme(config.quantization)
    if row.integer_only and config.io_dtype not in row.io_dtypes:
        raise EdgeCompressError(
            f"Variant {config.name!r}: quantization={row.name!r} makes inputs and outputs of type "
            f"{' or '.join(repr(d) for d in row.io_dtypes)}. Received: io_dtype={config.io_dtype!r}")
    return config


def conversion(spec) -> ConversionConfig:
    """A variant name (see `VARIANTS`), a `ConversionConfig`, or its mapping (checked against its scheme)."""
    if isinstance(spec, ConversionConfig):
        return spec
    if isinstance(spec, str):
        if spec not in VARIANTS:
            raise EdgeCompressError(
                f"Unknown quantization variant {spec!r}. Valid variants: {sorted(VARIANTS)}, "
                "or a mapping with `name` and `quantization`."
            )
        return VARIANTS[spec]()
    return check(ConversionConfig.from_dict(spec))
