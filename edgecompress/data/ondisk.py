"""Arrays that stay on disk: the rows a batch needs are read when it needs them.

A folder of 50,000 RGB images decoded into one array is 7.5 GB at 224x224 (and four times that once
copied to float32 for training). Above `stream_bytes()` of decoded pixels, a folder is decoded once,
image by image, into a `.npy` file under `cache_dir()`, and the dataset holds `DiskArray`s: rows read
with `os.pread` (no memory map, so what was read sits in the page cache, not in the process's resident
memory). `Scaled` applies the model's input scaling to the rows it is asked for. `take` selects rows
without reading them (splits, shuffles); indexing reads. `models.training.fit` and `predict` feed them to
Keras in batches (tf_keras turns a `Sequence` into a `tf.data` pipeline).

TensorFlow-free.

Example:

>>> a = DiskArray("images.npy")      # (50000, 224, 224, 3) uint8, nothing read yet
>>> half = a.take(range(0, 50000, 2))  # still nothing read
>>> batch = half[:32]                 # 32 rows read: a numpy array
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

STREAM_ENV = "EDGECOMPRESS_STREAM_BYTES"
CACHE_ENV = "EDGECOMPRESS_DATA_CACHE"
# Decoded pixels above this stay on disk: about 1,800 RGB images of 224x224. Held in memory, 1.5 GB of pixels
# (10,000 such images) peaked at 23.3 GB of RSS through build-edge, on disk at 2.1 GB (`invoke benchmark-stream`).
DEFAULT_STREAM_BYTES = 256 << 20
_CHUNK_BYTES = 64 << 20


def stream_bytes() -> int:
    """Decoded bytes above which a dataset streams from disk: `EDGECOMPRESS_STREAM_BYTES`, or 256 MiB."""
    value = os.environ.get(STREAM_ENV)
    if value is None:
        return DEFAULT_STREAM_BYTES
    try:
        return int(float(value))
    except ValueError:
        from edgecompress.errors import EdgeCompressError

        raise EdgeCompressError(f"Received an invalid value for {STREAM_ENV}: {value!r}. Give a number of bytes "
                                "(0 streams every folder; unset for the 256 MiB default).") from None


def cache_dir() -> Path:
    """Where decoded datasets are kept: `EDGECOMPRESS_DATA_CACHE`, or `~/.cache/edgecompress/decoded`."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "edgecompress" / "decoded"
    return Path(root)


class Rows:
    """What `DiskArray` and `Scaled` share: a length, a shape and a dtype, `take` (lazy) and `[]` (reads)."""

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_bytes(self) -> int:
        return row_bytes(self)

    @property
    def nbytes(self) -> int:
        return self.row_bytes * len(self)

    def __len__(self) -> int:
        return int(self.shape[0])

    def take(self, idx) -> "Rows":
        raise NotImplementedError

    def read(self, idx: np.ndarray) -> np.ndarray:
        """The rows `idx` (int64 indices into this array) as one numpy array."""
        raise NotImplementedError

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} is out of bounds for {len(self)} rows")
            out = self.read(np.asarray([i]))[0]
            return out[rest] if rest else out
        out = self.read(_indices(key, len(self)))
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        logger.debug("Reading all %d rows (%.0f MB) of %r into memory", len(self), self.nbytes / 1e6, self)
        out = np.empty(self.shape, self.dtype)
        for start, stop in chunks(self):
            out[start:stop] = self.read(np.arange(start, stop))
        return out if dtype is None else out.astype(dtype, copy=False)


def row_bytes(a, min_itemsize: int = 1) -> int:
    """Bytes of one row of `a` (an array or `Rows`), its items counted at `min_itemsize` at least."""
    return int(np.prod(a.shape[1:], dtype=np.int64)) * max(min_itemsize, np.dtype(a.dtype).itemsize)


def chunks(a, max_bytes: int = _CHUNK_BYTES):
    """(start, stop) ranges covering `a`'s rows, each at most `max_bytes` (one row at least) once cast to float32,
    as the checks and scaling that read them in chunks do."""
    step = max(1, max_bytes // max(1, row_bytes(a, min_itemsize=4)))
    return [(s, min(s + step, len(a))) for s in range(0, len(a), step)]


def _indices(key, n: int) -> np.ndarray:
    if isinstance(key, slice):
        return np.arange(n)[key]
    idx = np.asarray(key)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {idx.shape} does not match {n} rows")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64).reshape(-1)
    idx = np.where(idx < 0, idx + n, idx)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"index out of bounds for {n} rows")
    return idx


def take(a, idx):
    """`a`'s rows `idx`: a lazy selection of a `Rows`, a copy of a numpy array."""
    idx = np.asarray(idx, np.int64)
    return a.take(idx) if is_lazy(a) else a[idx]


def is_lazy(a) -> bool:
    """Whether `a` is rows on disk (`Rows`: read when indexed), not an array in memory: the one way to ask."""
    return isinstance(a, Rows)


class DiskArray(Rows):
    """A read-only `.npy` file (C order) read row by row, optionally through a selection of its rows."""

    def __init__(self, path, rows: np.ndarray | None = None):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path} is in Fortran order; save it in C order (numpy's default).")
        self._file_shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        self.shape = (len(self.rows) if self.rows is not None else self._file_shape[0], *self._file_shape[1:])
        self._fd = None

    def __repr__(self):
        return f"DiskArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def __getstate__(self):
        return {"path": str(self.path), "rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["path"], state["rows"])

    def __del__(self, _close=os.close):  # bound here: at interpreter exit the module's `os` may be gone
        if getattr(self, "_fd", None) is not None:
            _close(self._fd)

    def take(self, idx) -> "DiskArray":
        idx = _indices(idx, len(self))
        return DiskArray(self.path, idx if self.rows is None else self.rows[idx])

    def read(self, idx: np.ndarray) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        file_rows = idx if self.rows is None else self.rows[idx]
        out = np.empty((len(file_rows), *self.shape[1:]), self.dtype)
        flat = out.reshape(len(file_rows), -1).view(np.uint8).reshape(len(file_rows), -1)
        size = self.row_bytes
        i = 0
        while i < len(file_rows):  # consecutive rows in one read
            j = i + 1
            while j < len(file_rows) and file_rows[j] == file_rows[j - 1] + 1 and (j - i) * size < _CHUNK_BYTES:
                j += 1
            want = (j - i) * size
            data = os.pread(self._fd, want, self._offset + int(file_rows[i]) * size)
            if len(data) != want:
                raise OSError(f"{self.path} is shorter than its header says (row {int(file_rows[i])}); delete it "
                              "and build again to decode the images anew.")
            flat[i:j] = np.frombuffer(data, np.uint8).reshape(j - i, size)
            i = j
        return out

    def digest(self) -> str:
        """A sha256 of the rows this array holds: the file's (written beside it) and the selection."""
        side = _digest_path(self.path)
        whole = json.loads(side.read_text())["sha256"] if side.exists() else _file_digest(self)
        if self.rows is None:
            return whole
        return hashlib.sha256(whole.encode() + np.ascontiguousarray(self.rows).tobytes()).hexdigest()


def _digest_path(path: Path) -> Path:
    return path.with_suffix(".sha256.json")


def _file_digest(a: DiskArray) -> str:
    h = hashlib.sha256()
    whole = DiskArray(a.path)
    for start, stop in chunks(whole):
        h.update(whole.read(np.arange(start, stop)).tobytes())
    return h.hexdigest()


class Scaled(Rows):
    """`base`'s rows passed through `fn` when they are read (the model's input scaling, a cast, a resize).

    Args:
        base: The rows.
        fn: (n, *base row) array -> (n, *shape) array.
        dtype: What `fn` returns. Defaults to float32.
        shape: Its row shape. Defaults to `base`'s.
        label: What `fn` does, in `digest` (stable across processes, unlike `fn`'s repr).
    """

    def __init__(self, base: Rows, fn, dtype=np.float32, shape: tuple | None = None, label: str | None = None):
        self.base, self.fn, self.dtype = base, fn, np.dtype(dtype)
        self.shape = (len(base), *(base.shape[1:] if shape is None else tuple(shape)))
        self.label = label or getattr(fn, "__name__", type(fn).__name__)

    def __repr__(self):
        return f"Scaled({self.base!r}, {self.label})"

    def take(self, idx) -> "Scaled":
        return Scaled(self.base.take(idx), self.fn, self.dtype, self.shape[1:], self.label)

    def read(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(self.base.read(idx)), self.dtype)

    def digest(self) -> str:
        return hashlib.sha256(f"{self.base.digest()}|{self.label}|{self.dtype}|{self.shape}".encode()).hexdigest()


def stats(a) -> tuple[float, float, int]:
    """(min, max, count of NaN and infinite values) of `a`, a numpy array or rows on disk read in chunks."""
    if not is_lazy(a):
        a = np.asarray(a)
        if a.size == 0:
            return 0.0, 0.0, 0
        finite = np.isfinite(a) if np.issubdtype(a.dtype, np.floating) else np.ones(a.shape, bool)
        bad = int((~finite).sum())
        return (float(a[finite].min()), float(a[finite].max()), bad) if bad < a.size else (0.0, 0.0, bad)
    lo, hi, bad = np.inf, -np.inf, 0
    for start, stop in chunks(a):
        c_lo, c_hi, c_bad = stats(a.read(np.arange(start, stop)))
        if c_bad < (stop - start) * int(np.prod(a.shape[1:], dtype=np.int64)):
            lo, hi = min(lo, c_lo), max(hi, c_hi)
        bad += c_bad
    return (float(lo), float(hi), bad) if np.isfinite(lo) else (0.0, 0.0, bad)


def write_rows(path, row_shape: tuple, dtype, count: int, rows) -> DiskArray:
    """Writes `count` rows (an iterable of arrays of `row_shape`) to the `.npy` file `path` as they come,
    atomically (a temporary name, then a rename: two workers decoding the same data do not collide), and
    the sha256 of their bytes beside it. Returns the file as a `DiskArray`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count, *row_shape)}
    written = 0
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for row in rows:
            b = np.ascontiguousarray(row, dtype).reshape(row_shape).tobytes()
            h.update(b)
            f.write(b)
            written += 1
    if written != count:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"write_rows: {written} rows for a header of {count}")
    _digest_path(path).write_text(json.dumps({"sha256": h.hexdigest(), "shape": [count, *row_shape]}))
    os.replace(tmp, path)
    return DiskArray(path)
