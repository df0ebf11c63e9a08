"""Post-training conversion of a Keras model to `.tflite` variants.

Which variants to produce is data (`configs.ConversionConfig`, with named
builders `float32()`, `dynamic_range()`, `float16()`, `int8_full()`,
`int8_float_io()`); this module turns one config into flatbuffer bytes.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from edgecompress.configs import ConversionConfig, Quantization
from edgecompress.errors import EdgeCompressError
from edgecompress.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)


def _unsupported_ops(message: str) -> list[str]:
    ops = set(re.findall(r"'(tfl?\.[A-Za-z0-9_]+)'", message))
    ops |= set(re.findall(r"op: '?([A-Z][A-Z0-9_]+)'?", message))
    ops |= set(re.findall(r"Quantization not yet supported for op: '?([A-Za-z0-9_.]+)", message))
    return sorted(ops)


def convert(model, config: ConversionConfig, representative_dataset=None) -> bytes:
    """Converts a tf-keras `model` to `.tflite` bytes as `config` says.

    Args:
        model: A tf-keras model.
        config: Which variant to produce.
        representative_dataset: A generator function yielding `[x]` float32
            batches of the model's input shape; required for `int8`.

    Raises:
        EdgeCompressError: when int8 is asked without calibration data, or an
            op has no int8 kernel (the op is named, with the fix).
    """
    from edgecompress._tf import tf

    q = config.quantization
    if config.float_layers:
        if representative_dataset is None:
            raise EdgeCompressError(f"Variant {config.name!r} is int8 and needs a representative dataset; pass "
                                    "calibration images (`--calibration DIR`).")
        from edgecompress.qdebug import selective_int8, tensors_of_layers

        try:
            return selective_int8(model, representative_dataset,
                                  tensors_of_layers(model, representative_dataset, config.float_layers))
        except EdgeCompressError as e:
            raise EdgeCompressError(f"Variant {config.name!r}: {e}") from None
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if q is Quantization.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif q is Quantization.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif q is Quantization.INT8:
        if representative_dataset is None:
            raise EdgeCompressError(
                f"Variant {config.name!r} is full-integer int8 and needs a representative "
                "dataset; pass calibration images (`--calibration DIR`)."
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        if not config.float_fallback:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if config.io_dtype == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            data = converter.convert()
    except Exception as e:  # noqa: BLE001 - converter errors are many types
        msg = str(e)
        ops = _unsupported_ops(msg)
        said = next((ln.strip() for ln in msg.splitlines() if "error:" in ln), msg.strip().splitlines()[-1])[:300]
        if "neither a custom op nor a flex op" in msg or "Select TF op" in msg:
            raise EdgeCompressError(
                f"Variant {config.name!r}: model {model.name!r} uses op(s) "
                f"{', '.join(ops) or '(see below)'} that TFLite has no builtin kernel for; "
                "edge runtimes cannot run them. Replace those layers with TFLite builtins. "
                f"Converter said: {said}"
            ) from None
        if q is Quantization.INT8 and not config.float_fallback:
            raise _not_int8_error(config, model, ops, said) from None
        raise EdgeCompressError(
            f"Variant {config.name!r}: the TFLite converter failed on model {model.name!r}"
            f"{' at ' + ', '.join(ops) if ops else ''}: {said}"
        ) from None
    if q is Quantization.INT8 and not config.float_fallback:
        # TFLITE_BUILTINS_INT8 alone does not guarantee it: the converter can
        # keep an op in float between DEQUANTIZE and QUANTIZE. Check the file.
        from edgecompress.inspect import float_ops

        left = float_ops(data)
        if left:
            raise _not_int8_error(config, model, left, "these ops were left in float")
    return data


def _not_int8_error(config, model, ops, said):
    return EdgeCompressError(
        f"Variant {config.name!r}: not every op of model {model.name!r} has an int8 kernel "
        f"({', '.join(ops) or 'unnamed'}). Use the float-fallback variant `int8_float_io` "
        "(recipe: \"quantize\": [\"int8_float_io\"]), or replace those layers. "
        f"Converter: {said}"
    )


def write_tflite(data: bytes, out_dir, name: str) -> Path:
    """Writes `<out_dir>/<name>.tflite` atomically."""
    return atomic_write_bytes(Path(out_dir) / f"{name}.tflite", data)
