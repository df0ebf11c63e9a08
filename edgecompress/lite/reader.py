"""Reads a `.tflite` file back: its ops, their tensor types, its weights.

TensorFlow-free. Used to check that an "int8" model is really integer-only
(the converter can silently keep an op in float between DEQUANTIZE and
QUANTIZE), to measure the sparsity that survives in the file, and to count
the distinct weight values clustering leaves (`unique_weights`).
"""

from __future__ import annotations

import numpy as np

from edgecompress.lite.runtime import runtime_info

_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def _interpreter(model_content: bytes):
    mod = runtime_info().module
    resolver = getattr(mod, "OpResolverType", None) or mod.experimental.OpResolverType
    # No delegate: XNNPACK would replace ops with one opaque DELEGATE node.
    interp = mod.Interpreter(model_content=model_content,
                             experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    return interp


def ops(model_content: bytes) -> list[dict]:
    """Each op with its name and the dtypes of its inputs and outputs."""
    interp = _interpreter(model_content)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    out = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op listing the runtimes expose
        out.append({
            "index": int(op["index"]),
            "op": op["op_name"],
            "inputs": [np.dtype(tensors[i]["dtype"]).name for i in op["inputs"] if i >= 0],
            "outputs": [np.dtype(tensors[i]["dtype"]).name for i in op["outputs"] if i >= 0],
        })
    return out


def float_ops(model_content: bytes) -> list[str]:
    """Names of ops that compute in floating point (QUANTIZE/DEQUANTIZE aside)."""
    names = []
    for op in ops(model_content):
        if op["op"] in _BOUNDARY_OPS:
            continue
        if any(d.startswith("float") for d in op["inputs"] + op["outputs"]):
            names.append(op["op"])
    return sorted(set(names))


def weight_sparsity(model_content: bytes) -> dict:
    """Share of exactly-zero weights per weighted op, read from the file itself.

    For int8 weights a zero is the stored value equal to its zero point
    (always 0 for TFLite's symmetric weight quantization).

    Returns:
        {"layers": [{"op", "tensor", "params", "zeros", "sparsity"}], "overall": float}
    """
    layers, total, zeros = [], 0, 0
    for name, t, w in _weights(model_content):
        zp = t.get("quantization", (0.0, 0))[1]
        z = int(np.count_nonzero(w == zp))
        layers.append({"op": name, "tensor": t["name"], "params": int(w.size), "zeros": z,
                       "sparsity": z / w.size if w.size else 0.0})
        total += w.size
        zeros += z
    return {"layers": layers, "overall": zeros / total if total else 0.0}


def _weights(model_content: bytes):
    """(op name, tensor details, stored weight array) of each weighted op's kernel."""
    interp = _interpreter(model_content)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    all_ops = interp._get_ops_details()  # noqa: SLF001
    # float16 (and some dynamic-range) files store weights as a constant fed through
    # DEQUANTIZE; the op's own input is then a runtime tensor, so follow it back.
    dequantized_from = {op["outputs"][0]: op["inputs"][0] for op in all_ops if op["op_name"] == "DEQUANTIZE"}
    for op in all_ops:
        if op["op_name"] not in _WEIGHTED_OPS or len(op["inputs"]) < 2:
            continue
        idx = dequantized_from.get(op["inputs"][1], op["inputs"][1])
        if idx not in tensors:
            continue
        try:
            yield op["op_name"], tensors[idx], interp.get_tensor(idx)
        except ValueError:
            continue


def unique_weights(model_content: bytes) -> dict:
    """Distinct weight values per kernel, read from the file: what weight clustering leaves.

    Per output channel, the distinct stored values (a 16-cluster kernel has
    at most 16 in each channel; zeros of pruning count as one). Per kernel,
    the distinct real values: with int8's per-channel scales each channel's
    values are scaled differently, so a kernel of C channels can hold up to
    C times the clusters, which is why clustering shrinks the gzip size of a
    float file more than that of an int8 one.

    Returns:
        {"layers": [{"op", "tensor", "params", "per_channel_max", "per_kernel"}],
         "max_per_channel": int, "max_per_kernel": int,
         "largest_per_channel": int, "largest_per_kernel": int}  (the last two: of the largest kernel)
    """
    layers = []
    for name, t, w in _weights(model_content):
        q = t.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", []), np.float64)
        axis = int(q.get("quantized_dimension", 0)) if scales.size > 1 else (3 if name == "DEPTHWISE_CONV_2D" else 0)
        axis = min(axis, w.ndim - 1)
        channels = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        per_channel = max(len(np.unique(c)) for c in channels) if channels.size else 0
        if scales.size > 1:  # real values: stored integer times its channel's scale
            shape = [1] * w.ndim
            shape[axis] = -1
            real = (w.astype(np.float64) - np.asarray(q.get("zero_points", 0)).reshape(shape)) * scales.reshape(shape)
        else:
            real = w
        layers.append({"op": name, "tensor": t["name"], "params": int(w.size), "per_channel_max": int(per_channel),
                       "per_kernel": int(len(np.unique(real)))})
    largest = max(layers, key=lambda x: x["params"], default={"per_channel_max": 0, "per_kernel": 0})
    return {"layers": layers, "max_per_channel": max((x["per_channel_max"] for x in layers), default=0),
            "max_per_kernel": max((x["per_kernel"] for x in layers), default=0),
            # The largest kernel is most of the file: what clustering did to the download.
            "largest_per_channel": largest["per_channel_max"], "largest_per_kernel": largest["per_kernel"]}
