"""Data in image files: a folder with one sub-folder per class (optionally `train/`, `val/`, `test/`, and a
`<group>__` file-name prefix for groups), or Fashion-MNIST's IDX files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import struct
from pathlib import Path

import numpy as np

from edgecompress.configs import Preprocessing
from edgecompress.data import groups
from edgecompress.data import ondisk
from edgecompress.errors import EdgeCompressError
from edgecompress.data.preprocessing import (
    IMAGE_SUFFIXES,
    ConversionNotice,
    load_image,
)

logger = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

from edgecompress.data.dataset import Dataset, assemble, stratified_split


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def find_idx(folder: Path, key: str):
    for suffix in (".gz", ""):
        p = folder / (_IDX_FILES[key] + suffix)
        if p.exists():
            return p
    return None


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError(f"not an unsigned-byte IDX file (magic {data[:4].hex()})")
        dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, EOFError, struct.error, ValueError) as e:
        raise EdgeCompressError(f"Cannot read IDX file {path}: {e}.") from None


def from_idx(folder: Path, spec):
    arrays = {}
    for key in _IDX_FILES:
        p = find_idx(folder, key)
        if p is None:
            raise EdgeCompressError(
                f"IDX folder {folder} lacks {_IDX_FILES[key]}(.gz); it needs all four "
                f"files: {sorted(_IDX_FILES.values())}."
            )
        arrays[key] = read_idx(p)
    classes = FASHION_MNIST_CLASSES if int(arrays["y_train"].max()) < 10 else range(int(arrays["y_train"].max()) + 1)
    name = "fashion-mnist" if folder.resolve() == DEBIAN_FASHION_MNIST else folder.name
    return assemble(name, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                   arrays["y_test"], classes, spec, "IDX images")


def _class_dirs(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _infer_spec(first_image: Path) -> Preprocessing:
    from PIL import Image

    with Image.open(first_image) as img:
        channels = 1 if img.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
        return Preprocessing(height=img.size[1], width=img.size[0], channels=channels)


def _read_classes(root: Path, class_names, spec, notice):
    """(images, labels, groups): groups from `<group>__` file-name prefixes (`data.groups`), or None."""
    files, ys = [], []
    for label, name in enumerate(class_names):
        d = root / name
        for f in _images_in(d) if d.is_dir() else []:
            files.append(f)
            ys.append(label)
    if not files:
        raise EdgeCompressError(f"No images (PNG/JPEG/BMP/GIF/WebP/TIFF) found under {root}.")
    g = groups.from_prefixes(files, root)
    if g is not None:
        groups.check(g, len(files), root, root.name)
    return _decode(files, spec, notice, root), np.asarray(ys, np.int64), g


def _decode(files, spec, notice, root):
    """The images `files` as uint8 (N, H, W, C): in memory, or above `ondisk.stream_bytes()` decoded once
    into the data cache and read from there as a batch needs them (`ondisk.DiskArray`)."""
    shape = tuple(spec.input_shape)
    total = len(files) * int(np.prod(shape))
    if total <= ondisk.stream_bytes():
        out = np.empty((len(files), *shape), np.uint8)
        for i, f in enumerate(files):
            out[i] = load_image(f, spec, notice)
        return out
    key = hashlib.sha256(spec.to_json().encode())
    for f in files:
        st = f.stat()
        key.update(f"\n{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    path = ondisk.cache_dir() / f"images-{key.hexdigest()[:24]}.npy"
    if path.exists():
        logger.info("Reading %d decoded images of %s from %s (%.2f GB, on disk)", len(files), root, path, total / 1e9)
        return ondisk.DiskArray(path)
    logger.info("Decoding %d images of %s (%.2f GB of pixels, more than the %.2f GB held in memory: %s) into %s; "
                "each batch reads its rows from there", len(files), root, total / 1e9, ondisk.stream_bytes() / 1e9,
                ondisk.STREAM_ENV, path)

    def rows():
        step = max(1000, len(files) // 10)
        for i, f in enumerate(files):
            if i and i % step == 0:
                logger.info("Decoded %d of %d images", i, len(files))
            yield load_image(f, spec, notice)

    return ondisk.write_rows(path, shape, np.uint8, len(files), rows())


VALIDATION_DIRS = ("val", "validation")


def from_folder(folder: Path, spec, test_fraction, seed):
    split_dirs = {d.name for d in _class_dirs(folder)}
    val_dirs = [d for d in VALIDATION_DIRS if d in split_dirs]
    if "train" in split_dirs and len(val_dirs) > 1:
        raise EdgeCompressError(f"{folder} has both `val/` and `validation/` beside `train/`; keep one.")
    val_dir = folder / val_dirs[0] if "train" in split_dirs and val_dirs else None
    presplit = "train" in split_dirs and ("test" in split_dirs or val_dir is not None)
    class_root = folder / "train" if presplit else folder
    classes = [d.name for d in _class_dirs(class_root)]
    if not classes:
        raise EdgeCompressError(
            f"Received an invalid value for `data`: {folder} has no class sub-folders. "
            "Put the images of each class in a sub-folder named after the class, "
            "e.g. data/cat/1.png, data/dog/2.png."
        )
    if len(classes) < 2:
        raise EdgeCompressError(
            f"{class_root} has only one class sub-folder ({classes[0]!r}); a "
            "classifier needs at least 2. Add a sub-folder per class."
        )
    empty = [c for c in classes if not _images_in(class_root / c)]
    if empty:
        raise EdgeCompressError(
            f"Class folder(s) {empty} under {class_root} hold no images "
            f"({', '.join(IMAGE_SUFFIXES)}). Add images or remove the folder."
        )
    if spec is None:
        spec = _infer_spec(_images_in(class_root / classes[0])[0])
    notice = ConversionNotice()
    logger.info("Reading images of %d classes from %s", len(classes), folder)
    xva = yva = None
    if presplit:
        for split in ("test", val_dir.name if val_dir else None):
            if split and (folder / split).is_dir():
                theirs = [d.name for d in _class_dirs(folder / split)]
                if theirs != classes:
                    raise EdgeCompressError(
                        f"{folder / split} has class folders {theirs}, but {class_root} has {classes}. Every split "
                        "needs the same class sub-folders (the model's output order is their sorted order).")
        xtr, ytr, gtr = _read_classes(folder / "train", classes, spec, notice)
        gva = None
        if val_dir is not None:
            xva, yva, gva = _read_classes(val_dir, classes, spec, notice)
        if (folder / "test").is_dir():
            xte, yte, gte = _read_classes(folder / "test", classes, spec, notice)
        else:  # train/ and val/ only: the validation images are the only held-out ones, test included
            xte, yte, gte, xva, yva, gva = xva, yva, gva, None, None, None
    else:
        x, y, g = _read_classes(folder, classes, spec, notice)
        tr, te = groups.split(g, test_fraction, seed) if g is not None else stratified_split(y, test_fraction, seed)
        xtr, ytr, xte, yte = ondisk.take(x, tr), y[tr], ondisk.take(x, te), y[te]
        gtr, gte, gva = (None, None, None) if g is None else (g[tr], g[te], None)
    notice.log(f"images of {folder}")
    ds = Dataset(folder.name, xtr, ytr, xte, yte, tuple(classes), spec, xva, yva)
    found = {k: v for k, v in (("train", gtr), ("test", gte), ("val", gva)) if v is not None}
    if found:
        logger.info("Groups from file-name prefixes (`<group>%s`): %s", groups.PREFIX_SEPARATOR,
                    ", ".join(f"{groups.describe(v)} in {k}" for k, v in found.items()))
        ds = dataclasses.replace(ds, groups_source=groups.PREFIX, **{f"groups_{k}": v for k, v in found.items()})
    return ds
