"""Accuracy of a `.tflite` file, measured with the real interpreter.

TensorFlow-free: runs wherever a TFLite runtime does. Integer inputs are
quantized with the input tensor's own scale and zero point, integer outputs
dequantized with the output tensor's.
"""

from __future__ import annotations

import logging

import numpy as np

from edgecompress.lite.numerics import dequantize, labels, quantize
from edgecompress.lite.runtime import make_interpreter

logger = logging.getLogger(__name__)


def predict(interp, x: np.ndarray) -> np.ndarray:
    """Runs `interp` on each float32 example of `x`; returns float scores (N, C)."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    in_dtype, out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    shape = tuple(inp["shape"])
    results = []
    for i in range(len(x)):
        xi = x[i:i + 1].reshape(shape)
        if in_dtype in (np.int8, np.uint8, np.int16):
            xi = quantize(xi, in_scale, in_zp, in_dtype)
        else:
            xi = xi.astype(in_dtype)
        interp.set_tensor(inp["index"], xi)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out_dtype in (np.int8, np.uint8, np.int16):
            y = dequantize(y, out_scale, out_zp)
        results.append(np.asarray(y, np.float32).reshape(-1))
    return np.stack(results)


def evaluate_tflite(path, x: np.ndarray, y: np.ndarray, *, reference=None, num_threads: int = 1) -> dict:
    """Top-1 accuracy of `path` on (x, y), and agreement with `reference`.

    Args:
        path: The `.tflite` file.
        x: float32 inputs, already preprocessed.
        y: Integer labels.
        reference: Optional predicted labels of the float model; when given,
            `agreement` is the share of examples with the same top-1.
        num_threads: Interpreter threads. Defaults to 1.
    """
    interp = make_interpreter(path, num_threads=num_threads)
    scores = predict(interp, x)
    pred = labels(scores)
    result = {"accuracy": float((pred == y).mean()), "count": int(len(y))}
    if reference is not None:
        result["agreement"] = float((pred == np.asarray(reference)).mean())
    return result, pred
