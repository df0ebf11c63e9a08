"""Accuracy (or the task's metric) of a `.tflite` file, measured with the real interpreter.

TensorFlow-free: runs wherever a TFLite runtime does. Integer inputs are
quantized with the input tensor's own scale and zero point, integer outputs
dequantized with the output tensor's.
"""

from __future__ import annotations

import base64
import logging

import numpy as np

from edgecompress.lite import inputs, tasks
from edgecompress.lite.numerics import dequantize, quantize
from edgecompress.lite.runtime import make_interpreter

logger = logging.getLogger(__name__)


def predict(interp, x: np.ndarray) -> np.ndarray:
    """Runs `interp` on each float32 example of `x`; returns float scores (N, C).

    A file of several inputs takes packed rows (`lite.inputs`): each row is cut into the file's inputs, in
    their order; a file of several outputs gives them flattened one after the other, in their order."""
    ins, outs = interp.get_input_details(), interp.get_output_details()
    shapes = [tuple(d["shape"]) for d in ins]
    several = len(ins) > 1
    reset = getattr(interp, "reset_all_variables", lambda: None)
    results = []
    for i in range(len(x)):
        row = x[i:i + 1]
        parts = inputs.split(row, inputs.file_shapes(ins)) if several else [row]
        for d, shape, xi in zip(ins, shapes, parts):
            interp.set_tensor(d["index"], _as_input(np.asarray(xi).reshape(shape), d))
        # A fused recurrent op (UNIDIRECTIONAL_SEQUENCE_LSTM) keeps its state in variable tensors across
        # invokes: each example is a sequence of its own, so the state starts at zero for each.
        reset()
        interp.invoke()
        results.append(np.concatenate([_as_output(interp.get_tensor(d["index"]), d) for d in outs]))
    return np.stack(results)


def _as_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32 numbers, flattened (dequantized where integer); a file of several outputs
    gives them one after the other (`lite.tasks.SeveralOutputs` cuts them apart)."""
    if np.dtype(detail["dtype"]) in (np.int8, np.uint8, np.int16):
        scale, zp = detail["quantization"]
        y = dequantize(y, scale, zp)
    return np.asarray(y, np.float32).reshape(-1)


def _as_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float `x` as the input tensor `detail` takes it: quantized with its scale and zero point when integer."""
    dtype = np.dtype(detail["dtype"])
    if dtype in (np.int8, np.uint8, np.int16):
        scale, zp = detail["quantization"]
        return quantize(x, scale, zp, dtype)
    return x.astype(dtype)


def evaluate_tflite(path, x: np.ndarray, y: np.ndarray, *, reference=None, num_threads: int = 1,
                    task: str = "classification") -> dict:
    """The metric of `task` (`lite.tasks`: top-1, ROC-AUC) of `path` on (x, y), and agreement with `reference`.

    Args:
        path: The `.tflite` file.
        x: float32 inputs, already preprocessed.
        y: Integer labels (class ids; for anomaly detection, 0 normal and 1 anomalous).
        reference: Optional predicted labels of the float model; when given,
            `agreement` is the share of examples with the same top-1.
        num_threads: Interpreter threads. Defaults to 1.
        task: What `y` means and what is measured. Defaults to `"classification"`.

    Returns:
        ({"accuracy": the metric, "count", "agreement" where there is one, and "terms": its per-example terms
        (`Task.terms`: for a classifier which examples it got right), packed by `pack_terms`}, predicted labels
        or None).
    """
    t = tasks.task(task)
    interp = make_interpreter(path, num_threads=num_threads)
    scores = predict(interp, x)
    pred = t.predictions(scores)
    result = {"accuracy": t.score(x, scores, y), "count": int(len(y))}
    if reference is not None and pred is not None:
        result["agreement"] = float((pred == np.asarray(reference)).mean())
    result["terms"] = pack_terms(t.terms(x, scores, y))
    if isinstance(t, tasks.SeveralOutputs):  # each output measured; the judged one is `accuracy`
        result["outputs"] = t.each(x, scores, y)
    return result, pred


_FLOAT_TERMS = "f32:"


def pack_terms(terms) -> str:
    """A file's per-example metric terms (`Task.terms`) as text, in order, small enough for a measurement's
    cache entry and a study's records: what two files' paired comparison on the same examples needs
    (`sanity.paired_standard_error`). Terms that are all 0 or 1 (a classifier's right and wrong) are hex of
    their packed bits, one bit per example; others are float32, base64.

    >>> read_terms(pack_terms([1, 0, 1]), 3).tolist(), read_terms(pack_terms([0.5, 2]), 2).tolist()
    ([1.0, 0.0, 1.0], [0.5, 2.0])
    """
    t = np.asarray(terms, np.float64).reshape(-1)
    if np.isin(t, (0.0, 1.0)).all():
        return np.packbits(t.astype(bool)).tobytes().hex()
    return _FLOAT_TERMS + base64.b64encode(t.astype("<f4").tobytes()).decode("ascii")


def read_terms(packed: str, n: int) -> np.ndarray:
    """The `n` terms `pack_terms` packed, as float64."""
    if packed.startswith(_FLOAT_TERMS):
        return np.frombuffer(base64.b64decode(packed[len(_FLOAT_TERMS):]), "<f4")[:n].astype(np.float64)
    return np.unpackbits(np.frombuffer(bytes.fromhex(packed), np.uint8), count=n).astype(np.float64)
