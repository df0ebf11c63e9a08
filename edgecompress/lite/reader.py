"""Reads a `.tflite` file back: its ops, their tensor types, its weights.

TensorFlow-free, from the flatbuffer schema ai-edge-litert ships (no interpreter). Used to check that an "int8" model is really integer-only
(the converter can silently keep an op in float between DEQUANTIZE and
QUANTIZE), to measure the sparsity that survives in the file, and to count
the distinct weight values clustering leaves (`unique_weights`).
"""

from __future__ import annotations

import numpy as np

from edgecompress.errors import EdgeCompressError

_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
# TensorType of the schema -> numpy dtype name (the types a file of ours holds; others read as their name).
_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT8": "int8", "UINT8": "uint8",
           "INT16": "int16", "UINT16": "uint16", "INT32": "int32", "UINT32": "uint32", "INT64": "int64",
           "UINT64": "uint64", "BOOL": "bool", "COMPLEX64": "complex64", "INT4": "int4"}  # int4: two to a byte


def flatbuffer_schema():
    """The `.tflite` flatbuffer schema ai-edge-litert ships (`schema_py_generated`): the public way to read a
    file, where the interpreter's op listing is private (`Interpreter._get_ops_details`)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # a board with only tflite-runtime: reading a file back is a host's job
        raise EdgeCompressError("Reading a .tflite file back needs ai-edge-litert's schema: "
                                "pip install 'edgecompress[litert]'.") from None
    return schema_py_generated


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


class ModelFile:
    """The primary subgraph of a `.tflite` file: its ops (name, inputs, outputs) and tensors."""

    def __init__(self, model_content: bytes):
        schema = flatbuffer_schema()
        self.data = bytes(model_content)
        self.model = schema.ModelT.InitFromPackedBuf(bytearray(self.data), 0)
        self.graph = self.model.subgraphs[0]
        ops, types = _names(schema.BuiltinOperator), _names(schema.TensorType)
        self.ops = []
        for i, op in enumerate(self.graph.operators):
            code = self.model.operatorCodes[op.opcodeIndex]
            name = ops.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            if name == "CUSTOM" and code.customCode:
                name = code.customCode.decode()
            self.ops.append({"index": i, "op_name": name, "inputs": [int(x) for x in op.inputs],
                             "outputs": [int(x) for x in op.outputs]})
        self.dtypes = [_DTYPES.get(types.get(t.type, ""), types.get(t.type, "unknown").lower())
                       for t in self.graph.tensors]

    def stored_bytes(self, index: int) -> bytes:
        """The bytes the file holds for tensor `index` (in its buffer, or past the flatbuffer at an offset);
        empty for a runtime tensor."""
        t = self.graph.tensors[index]
        buf = self.model.buffers[t.buffer] if t.buffer < len(self.model.buffers) else None
        if buf is None:
            return b""
        return bytes(buf.data) if buf.data is not None else self.data[buf.offset:buf.offset + buf.size]

    def constant(self, index: int):
        """(name, quantization, stored array) of a tensor held in the file, or None for a runtime tensor."""
        t = self.graph.tensors[index]
        raw = self.stored_bytes(index)
        if not raw:
            return None
        q = t.quantization
        quant = {"scales": np.asarray(q.scale if q is not None and q.scale is not None else [], np.float64),
                 "zero_points": np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64),
                 "quantized_dimension": int(q.quantizedDimension) if q is not None else 0}
        shape = [int(d) for d in t.shape] if t.shape is not None else []
        name = t.name.decode() if t.name else f"tensor {index}"  # a file without names (`lite.strip`)
        if self.dtypes[index] == "int4":
            return name, quant, unpack_int4(raw, shape)
        return name, quant, np.frombuffer(raw, dtype=self.dtypes[index]).reshape(shape)


def unpack_int4(raw: bytes, shape) -> np.ndarray:
    """int4 values packed two to a byte (the low nibble first, as LiteRT stores them), as int8 of `shape`."""
    b = np.frombuffer(raw, np.uint8)
    nibbles = np.stack([b & 0x0F, b >> 4], axis=-1).reshape(-1).astype(np.int8)
    values = np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)
    return values[:int(np.prod(shape))].reshape(shape)


def ops(model_content: bytes) -> list[dict]:
    """Each op with its name and the dtypes of its inputs and outputs."""
    f = ModelFile(model_content)
    return [{"index": op["index"], "op": op["op_name"],
             "inputs": [f.dtypes[i] for i in op["inputs"] if i >= 0],
             "outputs": [f.dtypes[i] for i in op["outputs"] if i >= 0]} for op in f.ops]


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
    for name, tensor, q, w in _weights(model_content):
        zp = int(q["zero_points"][0]) if q["zero_points"].size else 0
        z = int(np.count_nonzero(w == zp))
        layers.append({"op": name, "tensor": tensor, "params": int(w.size), "zeros": z,
                       "sparsity": z / w.size if w.size else 0.0})
        total += w.size
        zeros += z
    return {"layers": layers, "overall": zeros / total if total else 0.0}


def float_kernels(model_content: bytes) -> list[str]:
    """The weighted ops (convolutions, fully connected) whose kernel the file stores in float32: what a
    quantizer left unquantized, as "OP tensor"."""
    return [f"{op} {tensor}" for op, tensor, _, w in _weights(model_content) if w.dtype == np.float32]


def _weights(model_content: bytes):
    """(op name, tensor name, quantization, stored weight array) of each weighted op's kernel."""
    f = ModelFile(model_content)
    # float16 (and some dynamic-range) files store weights as a constant fed through
    # DEQUANTIZE; the op's own input is then a runtime tensor, so follow it back.
    dequantized_from = {op["outputs"][0]: op["inputs"][0] for op in f.ops if op["op_name"] == "DEQUANTIZE"}
    for op in f.ops:
        if op["op_name"] not in _WEIGHTED_OPS or len(op["inputs"]) < 2 or op["inputs"][1] < 0:
            continue
        found = f.constant(dequantized_from.get(op["inputs"][1], op["inputs"][1]))
        if found is not None:
            yield (op["op_name"], *found)


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
    for name, tensor, q, w in _weights(model_content):
        scales = q["scales"]
        axis = q["quantized_dimension"] if scales.size > 1 else (3 if name == "DEPTHWISE_CONV_2D" else 0)
        axis = min(axis, w.ndim - 1)
        channels = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        per_channel = max(len(np.unique(c)) for c in channels) if channels.size else 0
        if scales.size > 1:  # real values: stored integer times its channel's scale
            shape = [1] * w.ndim
            shape[axis] = -1
            zero_points = q["zero_points"] if q["zero_points"].size == scales.size else np.zeros(scales.size, np.int64)
            real = (w.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)
        else:
            real = w
        layers.append({"op": name, "tensor": tensor, "params": int(w.size), "per_channel_max": int(per_channel),
                       "per_kernel": int(len(np.unique(real)))})
    largest = max(layers, key=lambda x: x["params"], default={"per_channel_max": 0, "per_kernel": 0})
    return {"layers": layers, "max_per_channel": max((x["per_channel_max"] for x in layers), default=0),
            "max_per_kernel": max((x["per_kernel"] for x in layers), default=0),
            # The largest kernel is most of the file: what clustering did to the download.
            "largest_per_channel": largest["per_channel_max"], "largest_per_kernel": largest["per_kernel"]}
