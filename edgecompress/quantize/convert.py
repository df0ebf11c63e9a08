"""Post-training conversion of a Keras model to `.tflite` variants.

Which variants to produce is data (`configs.ConversionConfig`, with named
builders `float32()`, `dynamic_range()`, `float16()`, `int8_full()`,
`int8_float_io()`, `int16x8.int16x8()`), and what each quantization means to
the converter is a row of `schemes.SCHEMES`; this module turns one config
into flatbuffer bytes by reading that row.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from edgecompress.quantize.schemes import ConversionConfig
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.fileio import atomic_write_bytes
from edgecompress.models import packed
from edgecompress.quantize import rewrites
from edgecompress.quantize.schemes import check, scheme

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
    return _io_in_order(_convert(model, config, representative_dataset), packed.layout(model),
                        len(packed.output_layout(model)))


def _convert(model, config: ConversionConfig, representative_dataset) -> bytes:
    """`model` as a `.tflite` file by `config`'s scheme (`schemes.Scheme`): the converter set by the scheme's row,
    run, its errors named, and an integer-only file checked to be integer throughout."""
    if config.float_layers:
        return _selective(model, config, representative_dataset)
    check(config)
    row = scheme(config.quantization)
    if row.aeq_recipe:  # narrower than the converter makes: LiteRT Quantizer on the float32 file
        return _narrower(model, config, row, representative_dataset)
    unrolled = [layer.name for layer in model.layers if type(layer).__name__ in LOOPED]
    if unrolled and row.integer_only:
        raise EdgeCompressError(
            f"Variant {config.name!r}: model {model.name!r} has recurrent layer(s) {', '.join(unrolled)} (GRU, "
            "SimpleRNN), which the converter lowers to a WHILE loop it cannot make integer (its int8 quantizer "
            "crashes on one: measured with TensorFlow 2.21). Use the dynamic or float16 variants "
            "(`--recipe quantize-only` makes both), or an LSTM, which converts to a fused int8 kernel.")
    model = rewrites.apply(model, row.rewrites)
    data = _run_converter(_converter(model, config, row, representative_dataset), config, model, row)
    if _mends_hybrid_depthwise(config):
        data = _hybrid_depthwise_per_channel(data)
    if row.integer_only and not config.float_fallback:
        # The integer ops set alone does not guarantee it: the converter can
        # keep an op in float between DEQUANTIZE and QUANTIZE. Check the file.
        left = row.read_back(data)
        if left:
            raise _not_int8_error(config, model, left, "these ops were left in float")
    return data


def _narrower(model, config: ConversionConfig, row, representative_dataset) -> bytes:
    """The float32 file, quantized by LiteRT Quantizer's recipe `row.aeq_recipe` (`quantize.aeq`)."""
    from edgecompress.quantize import aeq
    from edgecompress.quantize.schemes import ConversionConfig as Variant, Quantization

    if row.needs_calibration and representative_dataset is None:
        raise EdgeCompressError(f"Variant {config.name!r} is {row.name} and needs a representative dataset; pass "
                                "calibration images (`--calibration DIR`).")
    float_file = _convert(model, Variant(config.name, Quantization.NONE), None)
    rep = None if representative_dataset is None else packed.split_representative(packed.layout(model),
                                                                                 representative_dataset)
    try:
        data, _ = aeq.quantize(float_file, row.aeq_recipe, rep, int4_share=config.int4_share)  # kept: logged
    except EdgeCompressError as e:
        raise EdgeCompressError(f"Variant {config.name!r} ({row.name}) of model {model.name!r}: {e}") from None
    return data


def _selective(model, config: ConversionConfig, representative_dataset) -> bytes:
    """int8 with `config.float_layers` kept in float (`debugger.selective_int8`: LiteRT Quantizer's int8 recipe,
    those layers' ops left unquantized)."""
    if representative_dataset is None:
        raise EdgeCompressError(f"Variant {config.name!r} is int8 and needs a representative dataset; pass "
                                "calibration images (`--calibration DIR`).")
    from edgecompress.quantize.debugger import selective_int8, tensors_of_layers

    model = rewrites.apply(model, scheme(config.quantization).rewrites)  # the int8 graph, layers kept in float
    try:
        return selective_int8(model, representative_dataset,
                              tensors_of_layers(model, representative_dataset, config.float_layers))
    except EdgeCompressError as e:
        raise EdgeCompressError(f"Variant {config.name!r}: {e}") from None


def _converter(model, config: ConversionConfig, row, representative_dataset):
    """TensorFlow's converter for `model`, set as the scheme's `row` and `config` say."""
    from edgecompress.models.backend import tf

    converter = rewrites.converter_of(model)
    if row.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if row.supported_types:
        converter.target_spec.supported_types = [getattr(tf, t) for t in row.supported_types]
    if row.needs_calibration:
        if representative_dataset is None:
            raise EdgeCompressError(
                f"Variant {config.name!r} is {row.name} and needs a representative "
                "dataset; pass calibration images (`--calibration DIR`)."
            )
        converter.representative_dataset = packed.split_representative(packed.layout(model), representative_dataset)
    if row.ops_set:
        integer = getattr(tf.lite.OpsSet, row.ops_set)
        # Float fallback: ops without an integer kernel stay float (TFLITE_BUILTINS), which
        # int8 gets by leaving the ops set alone and int16x8 by naming both.
        if not config.float_fallback:
            converter.target_spec.supported_ops = [integer]
        elif row.ops_set != "TFLITE_BUILTINS_INT8":
            converter.target_spec.supported_ops = [integer, tf.lite.OpsSet.TFLITE_BUILTINS]
    if not config.per_channel:
        converter._experimental_disable_per_channel = True  # one scale per kernel (TF 2.21's converter flag)
    if row.integer_only and config.io_dtype != "float32":
        converter.inference_input_type = getattr(tf, config.io_dtype)
        converter.inference_output_type = getattr(tf, config.io_dtype)
    return converter


def _run_converter(converter, config: ConversionConfig, model, row) -> bytes:
    """The converter's file, or its failure as an error that names the ops and the fix."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return converter.convert()
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
        if row.integer_only and not config.float_fallback:
            raise _not_int8_error(config, model, ops, said) from None
        raise EdgeCompressError(
            f"Variant {config.name!r}: the TFLite converter failed on model {model.name!r}"
            f"{' at ' + ', '.join(ops) if ops else ''}: {said}"
        ) from None


def _io_in_order(data: bytes, layout, outputs: int) -> bytes:
    """The file of a model of several inputs or outputs (`models.packed`) with its inputs in the layout's
    order, the order a packed row holds them (`lite.inputs.split`) and the Keras model's, and its `outputs`
    outputs in the model's order (the signature's `output_0`, `output_1`, ...): the converter orders a
    concrete function's tensors its own way (measured: `meta` before `image` for a model that took `image`
    first). Only the subgraph's lists of inputs and outputs are reordered; `data` is returned as it is
    otherwise."""
    if not layout and outputs < 2:
        return data
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = model.subgraphs[0]
    inputs, outs = list(graph.inputs), list(graph.outputs)
    if layout:
        by_name = {packed.file_input_name(graph.tensors[i].name.decode()): i for i in graph.inputs}
        names = [n for n, _ in layout]
        if sorted(by_name) != sorted(names):
            raise EdgeCompressError(f"The converted file's inputs are {sorted(by_name)}; the model's are {names}. "
                                    "Rename the model's inputs so no two differ only in case or punctuation.")
        inputs = [by_name[n] for n in names]
    if outputs > 1:
        by_key = {m.name.decode(): m.tensorIndex for m in model.signatureDefs[0].outputs}
        outs = [by_key[f"output_{i}"] for i in range(outputs)]
    if inputs == list(graph.inputs) and outs == list(graph.outputs):
        return data
    graph.inputs, graph.outputs = inputs, outs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _mends_hybrid_depthwise(config: ConversionConfig) -> bool:
    return not config.per_channel and not scheme(config.quantization).integer_only


def cache_token(config: ConversionConfig) -> list:
    """What a conversion's cache key holds of the mending `convert` does to the converter's file, so a build
    folder's file from before it is not reused (other conversions' keys stay as they were)."""
    token = ["hybrid-depthwise-per-channel"] if _mends_hybrid_depthwise(config) else []
    row = scheme(config.quantization)
    if row.aeq_recipe or config.float_layers:  # selective int8 is LiteRT Quantizer's too
        from edgecompress.quantize import aeq

        token += ["ai-edge-quantizer", aeq.version()]
    return token


def _hybrid_depthwise_per_channel(data: bytes) -> bytes:
    """A dynamic-range file of one scale per kernel (`dynamic_per_tensor`) with each hybrid DEPTHWISE_CONV_2D's
    int8 kernel given its one scale once per channel: the same weights, dequantized alike. LiteRT's hybrid
    depthwise kernel reads a scale per channel whatever the file holds, so with one it read past the end: a
    MobileNetV3 file gave NaN with XNNPACK and one class for every image without it (12.5%, chance, on 8
    classes), where per channel it kept top-1 (`tests/test_schemes.py`). Other ops take one scale."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    changed = False
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
                continue
            x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
            q = w.quantization
            if (x.type != schema.TensorType.FLOAT32 or w.type != schema.TensorType.INT8 or q is None
                    or q.scale is None or len(q.scale) != 1):
                continue
            channels = int(w.shape[3])
            q.scale = [float(q.scale[0])] * channels
            q.zeroPoint = [int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0] * channels
            q.quantizedDimension = 3
            changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else data


RECURRENT = ("LSTM", "GRU", "SimpleRNN")
LOOPED = ("GRU", "SimpleRNN")  # no fused kernel: a WHILE loop of builtins


def _not_int8_error(config, model, ops, said):
    return EdgeCompressError(
        f"Variant {config.name!r}: not every op of model {model.name!r} has an {config.quantization.value} kernel "
        f"({', '.join(ops) or 'unnamed'}). Use the float-fallback variant `int8_float_io` "
        "(recipe: \"quantize\": [\"int8_float_io\"]), or replace those layers. "
        f"Converter: {said}"
    )


def write_tflite(data: bytes, out_dir, name: str) -> Path:
    """Writes `<out_dir>/<name>.tflite` atomically."""
    return atomic_write_bytes(Path(out_dir) / f"{name}.tflite", data)
