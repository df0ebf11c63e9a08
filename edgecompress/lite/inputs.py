"""A model of several inputs, fed one packed row per example.

A model with inputs `a` (shape (32, 32, 3)) and `b` (shape (4,)) is trained, calibrated and measured on one
float32 array whose rows hold `a` then `b`, flattened: (N, 3076). The Keras stages see one input (the first
layers of the model cut the row apart again: `models.packed`), so pruning, distillation, factorization and
clustering meet one input as they always do; the `.tflite` files keep the user's inputs, in the same order,
and this module cuts a packed row into them for the interpreter. TensorFlow-free: it runs on the device.

A layout is a tuple of `(name, shape)` pairs, in the order the row holds them.

>>> layout = (("a", (2, 2)), ("b", (3,)))
>>> row = pack({"a": np.ones((1, 2, 2)), "b": np.zeros((1, 3))}, layout)
>>> row.shape, [p.shape for p in split(row, [s for _, s in layout])]
((1, 7), [(1, 2, 2), (1, 3)])
"""

from __future__ import annotations

import numpy as np

from edgecompress.errors import EdgeCompressError


def width(shape) -> int:
    """How many numbers one example of `shape` holds (its share of a packed row)."""
    return int(np.prod([int(d) for d in shape], dtype=np.int64))


def check_layout(layout) -> tuple:
    """`layout` as a tuple of `(name, shape)` with positive integer shapes, refused otherwise."""
    out = []
    for item in layout:
        try:
            name, shape = item
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise EdgeCompressError(f"Received an invalid value for `inputs`, expected (name, shape) pairs. "
                                    f"Received: {item!r}") from None
        if not isinstance(name, str) or not name or not shape or min(shape) <= 0:
            raise EdgeCompressError(f"Received an invalid value for `inputs`, expected a name and a shape of "
                                    f"positive sizes. Received: {item!r}")
        out.append((name, shape))
    if len({n for n, _ in out}) != len(out):
        raise EdgeCompressError(f"Received an invalid value for `inputs`: two inputs share a name ({out}).")
    return tuple(out)


def pack(arrays: dict, layout, where: str = "data") -> np.ndarray:
    """The packed float32 rows (N, total width) of `arrays`, one array per input name of `layout`.

    Raises:
        EdgeCompressError: naming the input, for one that is missing, of another shape, or of another count.
    """
    check_arrays(arrays, layout, where)
    layout = check_layout(layout)
    return np.concatenate([np.asarray(arrays[name]).reshape(len(arrays[name]), -1).astype(np.float32)
                           for name, _ in layout], axis=1)


def check_arrays(arrays: dict, layout, where: str = "data") -> int:
    """The example count of `arrays` (one per input name of `layout`), read from their shapes alone; refused,
    naming the input, for one that is missing, of another shape, or of another count."""
    count = None
    for name, shape in check_layout(layout):
        if name not in arrays:
            raise EdgeCompressError(f"{where} has no examples for the model's input {name!r}; it holds "
                                    f"{sorted(arrays)}. Store one array per input, named after it.")
        a = arrays[name]
        if tuple(a.shape[1:]) != shape:
            raise EdgeCompressError(f"{where}: input {name!r} has examples of shape {tuple(a.shape[1:])}; the model "
                                    f"takes {shape}. Pass the arrays the model was trained on.")
        if count is not None and len(a) != count:
            raise EdgeCompressError(f"{where}: input {name!r} has {len(a)} examples, the input before it {count}; "
                                    "every input needs one example per label.")
        count = len(a)
    return int(count or 0)


def split(rows: np.ndarray, shapes) -> list[np.ndarray]:
    """`rows` (N, total width) cut into one array per input, each (N, *shape), in order."""
    rows = np.asarray(rows)
    rows = rows.reshape(len(rows), -1)
    total = sum(width(s) for s in shapes)
    if total != rows.shape[1]:
        raise EdgeCompressError(f"A packed row holds {rows.shape[1]} numbers; the model's inputs {list(shapes)} "
                                f"take {total}.")
    out, start = [], 0
    for shape in shapes:
        end = start + width(shape)
        out.append(rows[:, start:end].reshape(len(rows), *shape))
        start = end
    return out


def file_shapes(details) -> list[tuple[int, ...]]:
    """The per-example shapes of an interpreter's inputs (`get_input_details()`), batch dropped, in order: the
    order a packed row holds them (`quantize.rewrites.converter_of` converts them in the layout's order)."""
    return [tuple(int(d) for d in detail["shape"][1:]) for detail in details]
