"""The RAM a file's tensors need at run time where TensorFlow Lite Micro does not run it: its runtime tensors
(inputs, outputs, activations; not the weights, which stay in the file) placed in one arena, greedy by size, as
TFLite's and TFLM's memory planners place them.

TFLM's recording allocator gives its arena exactly (`lite.micro`); LiteRT's Python API says nothing of its
arena. So for a file TFLM refuses (a dynamic-range or int4 file, an op it lacks) the report gives this plan
instead, named as what it is: the runtime tensors' bytes as a greedy-by-size planner packs them, without the
kernels' scratch buffers and the runtime's own bookkeeping (TFLM's arena holds those too, so on a file TFLM runs
the plan is at most its arena: `tests/test_arena.py`).

TF-free: the flatbuffer schema only.

>>> planned_arena_bytes(open("build/edge/dynamic.tflite", "rb").read())  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from edgecompress.lite.reader import ModelFile

ALIGNMENT = 16  # bytes each tensor's offset is rounded to (TFLite's kDefaultTensorAlignment)
_BYTES = {"int4": 0.5, "bool": 1}


def _nbytes(dtype: str, shape) -> int:
    """A tensor's bytes; 0 for a type without a fixed size (a string, a resource or variant handle), which the
    plan leaves out. A dimension unknown until run time (-1) counts as 1, as at batch size 1."""
    try:
        size = _BYTES.get(dtype) or np.dtype(dtype).itemsize
    except TypeError:
        return 0
    return int(np.ceil(int(np.prod([max(int(d), 1) for d in shape], dtype=np.int64)) * size))


def lifetimes(model: ModelFile) -> dict[int, tuple[int, int, int]]:
    """Each runtime tensor of the primary subgraph: (bytes, first op that needs it, last op that needs it).
    Inputs live from the start, outputs to the end; a tensor the file holds (a weight) is not one."""
    n = len(model.ops)
    first, last = {}, {}
    for t in model.graph.inputs if model.graph.inputs is not None else []:
        first[int(t)] = 0
    for op in model.ops:
        for t in [*op["inputs"], *op["outputs"]]:
            if t >= 0 and not model.stored_bytes(t):
                first.setdefault(t, op["index"])
                last[t] = op["index"]
    for t in model.graph.outputs if model.graph.outputs is not None else []:
        last[int(t)] = n
        first.setdefault(int(t), n)
    shapes = model.graph.tensors
    return {t: (_nbytes(model.dtypes[t], shapes[t].shape if shapes[t].shape is not None else []), first[t],
                last.get(t, first[t])) for t in first}


def plan(tensors: dict[int, tuple[int, int, int]]) -> int:
    """The arena greedy by size takes: each tensor, largest first, at the lowest aligned offset where it overlaps
    no placed tensor that is alive at the same time. Returns the arena's end."""
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    top = 0
    for _, (size, start, stop) in sorted(tensors.items(), key=lambda kv: (-kv[1][0], kv[0])):
        size = -(-size // ALIGNMENT) * ALIGNMENT
        live = sorted((o, e) for o, e, s, t in placed if s <= stop and start <= t)
        offset = 0
        for o, e in live:
            if offset + size <= o:
                break
            offset = max(offset, e)
        placed.append((offset, offset + size, start, stop))
        top = max(top, offset + size)
    return top


def planned_arena_bytes(model_content: bytes) -> int:
    """The runtime tensors of a file, planned into one arena greedy by size (`plan`), in bytes."""
    return plan(lifetimes(ModelFile(model_content)))
