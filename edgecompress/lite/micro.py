"""What a microcontroller needs to run a `.tflite` file: TensorFlow Lite Micro's own interpreter (PyPI
`tflite-micro`) loads it, and its recording allocator gives the tensor arena exactly, the RAM a board must set
aside. A file TFLM cannot run (a dynamic-range "hybrid" file, float16 weights, an op it lacks) is named with the
first node it refuses and why, as TFLM says it.

TF-free: numpy and `tflite-micro` only.

Example:

>>> fit = micro_fit("build/edge/int8.tflite")
>>> fit.runs, fit.arena_bytes
(True, 19040)
>>> micro_fit("build/edge/dynamic.tflite").refused
'CONV_2D (node 2): Hybrid models are not supported on TFLite Micro.'
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile

import numpy as np

from edgecompress.errors import EdgeCompressError

# The arena TFLM is given to plan in; the recording allocator reports what it used. A file whose plan does not
# fit is tried once more with `ARENA_RETRY_BYTES`.
ARENA_TRY_BYTES = 16 << 20
ARENA_RETRY_BYTES = 256 << 20

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_FAILED_NODE = re.compile(r"Node (\w+) \(number (\d+)\) failed to (?:prepare|invoke)")
_NO_KERNEL = re.compile(r"Didn't find op for (?:builtin|custom) opcode '([^']+)'")
_TOO_SMALL = ("Failed to resize buffer", "Arena size is too small", "Failed to allocate memory")


@dataclasses.dataclass(frozen=True)
class MicroFit:
    """Whether TensorFlow Lite Micro runs a file, and with how much RAM.

    Args:
        runs: TFLM's interpreter allocated its tensors (every op has a TFLM kernel for its types).
        arena_bytes: The tensor arena it used (`RecordingMicroAllocator`'s total), or None where it does not run.
        refused: The first node TFLM refused and why (`"CONV_2D (node 2): Hybrid models are not supported on TFLite
            Micro."`), or None.
    """

    runs: bool
    arena_bytes: int | None = None
    refused: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _flush_c_stdio() -> None:
    """Flushes C's stdio buffers into their file descriptors."""
    import ctypes

    ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def _printed(sink: list):
    """What TFLM prints inside the block (its `MicroPrintf` writes to file descriptor 2), appended to `sink`."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _flush_c_stdio()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            _flush_c_stdio()
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            sink.append(f.read().decode(errors="replace"))


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise EdgeCompressError("TensorFlow Lite Micro's interpreter is not installed: pip install tflite-micro "
                                "(it comes with `edgecompress[train]`; `edgecompress[micro]` alone on a board).") from None
    return runtime


def _refusal(said: str) -> str:
    """TFLM's own words on the first node it refused: `OP (node N): reason`."""
    lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
    missing = _NO_KERNEL.search(said)
    if missing:  # an op TFLM has no kernel for at all (GELU): its registration fails before any node
        return f"{missing.group(1)}: TensorFlow Lite Micro has no kernel for this op"
    for i, line in enumerate(lines):
        m = _FAILED_NODE.search(line)
        if m:
            reason = next((re.sub(r"^\S+\.cc(:\d+)? ", "", lines[j]) for j in range(i - 1, -1, -1)
                           if not lines[j].startswith("[RecordingMicroAllocator]")), "")
            return f"{m.group(1)} (node {m.group(2)}): {reason}".rstrip(": ")
    return lines[-1] if lines else "TFLM could not allocate its tensors"


def _load(path, arena: int):
    said: list[str] = []
    try:
        with _printed(said):
            interpreter = _runtime().Interpreter.from_file(str(path), arena_size=arena)
    except (RuntimeError, ValueError) as e:
        return None, "".join(said) + f"\n{e}"
    return interpreter, "".join(said)


def micro_fit(path) -> MicroFit:
    """Loads `path` in TensorFlow Lite Micro's interpreter: whether it runs, its arena, or what it refused."""
    interpreter, said = _load(path, ARENA_TRY_BYTES)
    if interpreter is None and any(s in said for s in _TOO_SMALL):
        interpreter, said = _load(path, ARENA_RETRY_BYTES)
    if interpreter is None:
        return MicroFit(False, refused=_refusal(said))
    report: list[str] = []
    with _printed(report):
        interpreter.print_allocations()
    m = _TOTAL.search("".join(report))
    if m is None:  # pragma: no cover - a tflite-micro whose recording allocator prints otherwise
        raise EdgeCompressError("TensorFlow Lite Micro's recording allocator printed no arena total; this "
                                "tflite-micro version reports allocations in another form.")
    return MicroFit(True, arena_bytes=int(m.group(1)))


def micro_outputs(path, x: np.ndarray) -> np.ndarray:
    """`path`'s outputs on inputs `x` (one example at a time, TFLM's reference kernels), quantized at the input
    and dequantized at the output as the file's own parameters say: what a microcontroller would compute."""
    interpreter, said = _load(path, ARENA_TRY_BYTES)
    if interpreter is None:
        raise EdgeCompressError(f"TensorFlow Lite Micro does not run {path}: {_refusal(said)}")
    inp, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    results = []
    for row in np.asarray(x, np.float32):
        interpreter.set_input(_quantize(row[None], inp), 0)
        interpreter.invoke()
        results.append(_dequantize(interpreter.get_output(0), out)[0])
    return np.stack(results)


def _quantize(x, detail):
    scale, zero = _params(detail)
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y, detail):
    scale, zero = _params(detail)
    return y.astype(np.float32) if scale == 0 else (y.astype(np.float32) - zero) * scale


def _params(detail) -> tuple[float, int]:
    q = detail.get("quantization_parameters") or {}
    scales, zeros = q.get("scales"), q.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zeros[0])
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)
