"""int16x8: 16-bit activations, 8-bit weights, as one scheme row and one variant.

TFLite's `EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8` ops
set: weights are int8 as in full-integer int8, activations int16, calibrated
with the same representative dataset. The finer activations keep accuracy
where int8's 256 levels lose it (wide activation ranges, regression
outputs), for about the same file size as int8. The catch is speed: XNNPACK
has no int16x8 kernels, so it runs on TFLite's reference kernels; the report
says so beside its latency. The int8 recovery (`--max-accuracy-drop`) offers
it when int8 loses too much.

Registered in `schemes.SCHEME_MODULES`; a recipe names it `"int16x8"`.
"""

from __future__ import annotations

from edgecompress.configs import ConversionConfig, Quantization, Scheme

SCHEME = Scheme(
    "int16x8", optimize=True, ops_set="EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
    needs_calibration=True, integer_only=True, io_dtypes=("float32", "int16"),
    kernels="TFLite reference kernels (XNNPACK has none for int16x8)", reference_kernels=True,
)


def int16x8() -> ConversionConfig:
    """int16 activations and int8 weights inside, float32 input and output."""
    return ConversionConfig("int16x8", Quantization.INT16X8, io_dtype="float32")
