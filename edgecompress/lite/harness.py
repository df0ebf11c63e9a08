"""The timing harness's two primitives: an input tensor for an interpreter's input, and timed invokes.
TensorFlow-free. `lite.latency` times whole files with them, `lite.profile` one op at a time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgecompress.errors import EdgeCompressError
from edgecompress.lite import inputs
from edgecompress.lite.numerics import quantize


def make_input(detail: dict, source=None, seed: int = 0, part=None) -> np.ndarray:
    """An input tensor of the right dtype and shape.

    `source` is None (random: uniform over the integer range for quantized
    inputs, [0, 1) for float) or a `.npy` file holding float32 inputs (they
    are quantized with the tensor's own scale and zero point when needed).
    For a file of several inputs, `part` is `(i, all input details)`: the `.npy` then holds packed rows
    (`lite.inputs`) and input `i` is cut out of the first.
    """
    shape = tuple(int(s) for s in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    rng = np.random.default_rng(seed)
    if source is None:
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        return rng.random(shape, dtype=np.float32).astype(dtype)
    path = Path(source)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise EdgeCompressError(f"Cannot read input file {path} as .npy ({e}).") from None
    x = np.asarray(x)
    if part is not None and len(part[1]) > 1:
        x = inputs.split(x.reshape(-1)[None] if x.ndim == 1 else x[:1], inputs.file_shapes(part[1]))[part[0]]
    if x.size != int(np.prod(shape)):
        if x.ndim >= 1 and x[0].size == int(np.prod(shape)):
            x = x[0]
        else:
            raise EdgeCompressError(
                f"Input file {path} has shape {x.shape}; the model wants {list(shape)}."
            )
    x = x.reshape(shape)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        scale, zp = detail["quantization"]
        return quantize(x, scale, zp, dtype)
    return x.astype(dtype)


def set_inputs(interp, source=None, seed: int = 0) -> list[dict]:
    """Sets every input of `interp` (`make_input`: random, or from a `.npy` file), each its own draw; returns
    the input details."""
    details = interp.get_input_details()
    for i, detail in enumerate(details):
        interp.set_tensor(detail["index"], make_input(detail, source, seed + i, part=(i, details)))
    return details


def time_invokes(interp, runs: int) -> list[float]:
    """Times `runs` calls of `interp.invoke()`; returns milliseconds."""
    invoke = interp.invoke
    clock = time.perf_counter_ns
    out = [0.0] * runs
    for i in range(runs):
        t0 = clock()
        invoke()
        out[i] = (clock() - t0) / 1e6
    return out
