"""A content-addressed cache of stage outputs, so unchanged stages are reused.

Each stage's output is stored under `<out_dir>/.cache/` with a name that
ends in a hash of everything that produced it: the previous stage's key, the
stage's config, the data's fingerprint, the seed, and the versions of the
libraries involved. A second build with nothing changed reuses every stage;
change one parameter and only that stage and the ones after it run again.
Files are written atomically, so a killed build leaves no half-written entry.

Shared safely: every key includes the library versions (`make_key` adds
them), each entry's SHA-256 is recorded beside it and checked on every read
(a truncated or altered entry is recomputed, with a warning, never used),
and an entry and its hash are written under a per-entry lock, so several
processes (search workers) can share one `.cache`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import platform
from importlib import metadata
from pathlib import Path

from edgecompress.lite.fileio import (atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text, pid_alive,
                                 sha256_path)

logger = logging.getLogger(__name__)

_DISTRIBUTIONS = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy", "edgecompress")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    return tuple(sorted(versions().items()))


def versions() -> dict:
    """Versions of Python and the libraries that shape an artifact."""
    out = {"python": platform.python_version()}
    for d in _DISTRIBUTIONS:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def make_key(*parts) -> str:
    """A short stable hash of JSON-able parts and the library versions (an upgrade never reuses old work)."""
    text = json.dumps([parts, _versions()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


QAT_SUFFIX = ".qat.h5"


def is_qat(model) -> bool:
    """Whether `model` holds tfmot quantization-aware training layers."""
    return any(type(layer).__name__.startswith(("QuantizeWrapper", "QuantizeLayer")) for layer in model.layers)


class StageCache:
    """Stores models, bytes and JSON by (name, key) under `root`.

    Disabled (`--no-cache`), nothing is reused or kept: files the build still
    needs to hand on (converted `.tflite` bytes) go to a temporary directory
    removed at exit, and `root` is left untouched.
    """

    def __init__(self, root, enabled: bool = True):
        self.root = Path(root)
        self.enabled = enabled
        self.reused: list[str] = []
        self.computed: list[str] = []
        if enabled:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(".*partial*"):  # left by a killed build; not another live one's
                pid = "".join(ch for ch in stale.name.split("partial", 1)[1].split(".")[0] if ch.isdigit())
                if pid and not pid_alive(int(pid)):
                    _remove(stale)
        else:
            import shutil
            import tempfile
            import weakref

            self.root = Path(tempfile.mkdtemp(prefix="edgecompress-nocache-"))
            weakref.finalize(self, shutil.rmtree, str(self.root), ignore_errors=True)

    def file(self, name: str, key: str, suffix: str) -> Path:
        """Where (name, key) is (or would be) stored."""
        return self._path(name, key, suffix)

    def _path(self, name: str, key: str, suffix: str) -> Path:
        return self.root / f"{name}-{key}{suffix}"

    def has(self, name: str, key: str, suffix: str) -> bool:
        """Whether (name, key) is stored, without loading it or counting a reuse."""
        return self.enabled and self._path(name, key, suffix).exists()

    @contextlib.contextmanager
    def _lock(self, path: Path, shared: bool):
        """An flock on `path`'s lock file: writers exclusive, readers shared (across processes)."""
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / (path.name + ".lock"), "a+") as f:
            fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _verified(self, path: Path) -> bool:
        """Whether `path` matches the hash recorded when it was written; a bad entry is removed, with a warning."""
        if not path.exists():
            return False
        record = path.with_name(path.name + ".sha256")
        want = record.read_text().strip() if record.exists() else None
        got = sha256_path(path)
        if want == got:
            return True
        logger.warning("Cache entry %s %s; recomputing it.", path.name,
                       "has no recorded hash" if want is None else "does not match its recorded hash (truncated or altered)")
        _remove(path)
        _remove(record)
        return False

    def _record(self, path: Path) -> None:
        atomic_write_text(path.with_name(path.name + ".sha256"), sha256_path(path) + "\n")

    def has_model(self, name: str, key: str) -> bool:
        """Whether a model is stored under (name, key), in either format."""
        return self.has(name, key, ".keras") or self.has(name, key, QAT_SUFFIX)

    def _note(self, hit: bool, name: str):
        (self.reused if hit else self.computed).append(name)
        if hit:
            logger.info("  reused %s (unchanged inputs)", name)

    def get_model(self, name: str, key: str):
        p = self._path(name, key, ".keras")
        if self.enabled and not p.exists() and self._path(name, key, QAT_SUFFIX).exists():
            p = self._path(name, key, QAT_SUFFIX)
        if not self.enabled:
            return None
        import tensorflow_model_optimization as tfmot

        from edgecompress.models.backend import keras
        from edgecompress.techniques.qat import float_quantize_config

        float_quantize_config()  # registers the config QAT models of preprocessing layers carry
        with self._lock(p, shared=True):
            if not self._verified(p):
                return None
            try:
                with tfmot.quantization.keras.quantize_scope():  # QAT models carry tfmot layers
                    model = keras.models.load_model(p, compile=False)
            except (ValueError, TypeError, OSError, KeyError) as e:
                logger.warning("Cache entry %s does not load (%s); recomputing it.", p.name, str(e)[:160])
                _remove(p)
                _remove(p.with_name(p.name + ".sha256"))
                return None
        self._note(True, name)
        return model

    def put_model(self, name: str, key: str, model) -> None:
        self._note(False, name)
        if self.enabled and any("cluster_centroids" in w.name for w in model.weights) and is_qat(model):
            # tfmot 0.8 cannot reload a cluster-preserving QAT model ("Layer expects 7 weight(s). Received 10");
            # storing it would only make the next build fail to read it. The stage runs again instead.
            logger.info("  %s: not cached (tfmot cannot reload cluster-preserving QAT models); it will rerun", name)
            return
        if self.enabled:
            # tfmot's QuantizeLayer does not reload from the .keras format ("expected 5 variables, but received
            # 3"); HDF5 round-trips quantization-aware models exactly.
            p = self._path(name, key, QAT_SUFFIX if is_qat(model) else ".keras")
            with self._lock(p, shared=False):
                with atomic_path(p) as tmp:
                    model.save(tmp)
                self._record(p)

    def get_bytes(self, name: str, key: str, suffix: str) -> bytes | None:
        p = self._path(name, key, suffix)
        if not self.enabled:
            return None
        with self._lock(p, shared=True):
            if not self._verified(p):
                return None
            data = p.read_bytes()
        self._note(True, name)
        return data

    def put_bytes(self, name: str, key: str, suffix: str, data: bytes) -> Path:
        """Stores `data` and returns its file (written even when disabled: callers read it back)."""
        self._note(False, name)
        p = self._path(name, key, suffix)
        with self._lock(p, shared=False):
            atomic_write_bytes(p, data)
            self._record(p)
        return p

    def get_json(self, name: str, key: str):
        p = self._path(name, key, ".json")
        if not self.enabled:
            return None
        with self._lock(p, shared=True):
            return json.loads(p.read_text()) if self._verified(p) else None

    def put_json(self, name: str, key: str, obj) -> None:
        if self.enabled:
            p = self._path(name, key, ".json")
            with self._lock(p, shared=False):
                atomic_write_json(p, obj)
                self._record(p)


def _remove(path: Path) -> None:
    """Deletes a cache file or a directory entry (a SavedModel), if it is there."""
    if path.is_dir():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

