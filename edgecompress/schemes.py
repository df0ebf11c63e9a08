"""Quantization schemes as data: what each one means to the converter and the report.

One row (`configs.Scheme`) per `Quantization`: converter settings
(optimizations, supported types, the ops set that makes it integer-only),
the I/O dtypes a variant may ask for, whether it needs calibration data,
whether every op must be integer, which kernels run it, and the names of the
functions that read it back and evaluate it. Callers ask the row
(`scheme("int8").needs_calibration`), never compare names. In the spirit of
AI Edge Quantizer's named recipes: `int16x8` is the same converter with other
widths, one row.

Built-in rows are below; a scheme in its own module (`edgecompress.int16x8`)
is registered by name in `SCHEME_MODULES` and loaded on first use.

Example:

>>> scheme("int8").ops_set
'TFLITE_BUILTINS_INT8'
>>> scheme("int16x8").reference_kernels
True
"""

from __future__ import annotations

import importlib

from edgecompress.configs import ConversionConfig, Quantization, Scheme
from edgecompress.errors import EdgeCompressError

SCHEMES: dict[str, Scheme] = {
    "none": Scheme("none", reference=True, kernels="XNNPACK (float)"),
    "dynamic": Scheme("dynamic", optimize=True, kernels="XNNPACK (dynamic-range int8 weights)"),
    "float16": Scheme("float16", optimize=True, supported_types=("float16",), kernels="XNNPACK (float16 weights, float compute)"),
    "int8": Scheme("int8", optimize=True, ops_set="TFLITE_BUILTINS_INT8", needs_calibration=True, integer_only=True,
                   io_dtypes=("int8", "float32"), kernels="XNNPACK (int8)", recover_with=("selective", "int16x8")),
}
# Schemes kept in a module of their own: name -> "module:ATTRIBUTE" holding its `Scheme`.
SCHEME_MODULES = {"int16x8": "edgecompress.int16x8:SCHEME"}


def scheme(name) -> Scheme:
    """The row of a `Quantization` (or its value); loads schemes kept in their own module."""
    key = name.value if isinstance(name, Quantization) else str(name)
    if key not in SCHEMES and key in SCHEME_MODULES:
        module, _, attr = SCHEME_MODULES[key].partition(":")
        row = getattr(importlib.import_module(module), attr)
        if row.name != key:
            raise ValueError(f"{SCHEME_MODULES[key]} defines scheme {row.name!r}, registered as {key!r}.")
        SCHEMES[key] = row
    if key not in SCHEMES:
        raise EdgeCompressError(f"Unknown quantization scheme {key!r}. Valid schemes: "
                                f"{sorted(set(SCHEMES) | set(SCHEME_MODULES))}.")
    return SCHEMES[key]


def check(config: ConversionConfig) -> ConversionConfig:
    """Refuses a variant whose I/O dtype its scheme cannot make; returns it."""
    row = scheme(config.quantization)
    if row.integer_only and config.io_dtype not in row.io_dtypes:
        raise EdgeCompressError(
            f"Variant {config.name!r}: quantization={row.name!r} makes inputs and outputs of type "
            f"{' or '.join(repr(d) for d in row.io_dtypes)}. Received: io_dtype={config.io_dtype!r}")
    return config
