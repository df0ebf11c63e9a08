"""Data in arrays: an `.npz`, or a folder of `.npy` files (read memory-mapped, large ones left on disk), with
optional groups, several inputs packed into one row and several outputs' labels packed into one row of columns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

from edgecompress.configs import Features
from edgecompress.data import groups
from edgecompress.data import ondisk
from edgecompress.lite import inputs
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

from edgecompress.data.dataset import Dataset, assemble, stratified_split, strata


def is_npy_folder(path) -> bool:
    """Whether `path` is a folder of `.npy` arrays (`x_train.npy`, `y_train.npy`, ... or `x.npy`, `y.npy`),
    read memory-mapped: the arrays an .npz would hold."""
    return path is not None and Path(path).is_dir() and any(
        (Path(path) / f"{k}.npy").is_file() or any((Path(path) / k).glob("*.npy")) for k in ("x_train", "x"))


def read_arrays(path) -> dict:
    """The arrays of an .npz (read whole) or of a folder of .npy files: examples larger than
    `ondisk.stream_bytes()` stay on disk (`ondisk.DiskArray`, read a batch at a time), the rest memory-mapped."""
    path = Path(path)
    if path.is_dir():
        try:  # `x_train/<input>.npy`: one array per input of a model of several (`lite.inputs`)
            return {_npy_name(path, f): _npy(f) for f in _npy_files(path)}
        except (OSError, ValueError) as e:
            raise EdgeCompressError(f"Cannot read the .npy files of {path} ({type(e).__name__}: {e}). Re-save them "
                                    "with `numpy.save`.") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise EdgeCompressError(f"Cannot read {path} as an .npz archive ({type(e).__name__}: {e}). "
                                "Re-save it with `numpy.savez`.") from None


def _npy_files(folder: Path) -> list[Path]:
    """A folder's `.npy` arrays: `x_train.npy`, and one level down `x_train/<input>.npy`, sorted."""
    return sorted([*folder.glob("*.npy"), *folder.glob("*/*.npy")])


def _npy_name(folder: Path, f: Path) -> str:
    return f.relative_to(folder).with_suffix("").as_posix()  # `x_train/image`, as an .npz names it


def _npy(f: Path):
    a = np.load(f, mmap_mode="r", allow_pickle=False)
    if f.stem.startswith("x") and a.ndim >= 2 and a.nbytes > ondisk.stream_bytes() and a.flags.c_contiguous:
        return ondisk.DiskArray(f)
    return a


def _peek(path, keys):
    """The first of `keys` in an .npz or a folder of .npy, or None (also for anything else: the reader says
    what is wrong with it)."""
    if path is None or str(path) in ("default", "fashion-mnist"):
        return None
    path = Path(path)
    if not ((path.is_file() and path.suffix == ".npz") or is_npy_folder(path)):
        return None
    try:
        arrays = read_arrays(path)
    except EdgeCompressError:
        return None
    return next((arrays[k] for k in keys if k in arrays), None)


def npz_holds_features(path) -> bool:
    """Whether an .npz's (or .npy folder's) examples are features rather than pixels: floats outside 0..255
    (MFCCs, sensor values). Features inside that range with an image-shaped model input are read as pixels."""
    x = _peek(path, ("x_train", "x"))
    if x is None or not len(x) or not np.issubdtype(x.dtype, np.floating):
        return False
    lo, hi, bad = ondisk.stats(x)
    return not bad and (lo < 0 or hi > 255)


def npz_holds_values(path) -> bool:
    """Whether an .npz's (or .npy folder's) labels are values (regression targets: floats that are not all
    whole numbers, or several columns), not class ids."""
    y = _peek(path, ("y_train", "y"))
    return (y is not None and y.size > 0 and np.issubdtype(y.dtype, np.floating) and bool(np.isfinite(y).all())
            and (y.ndim == 2 or not np.all(y == np.round(y))))


def from_arrays(path, spec, test_fraction, seed, name, class_names=None, values=False, outputs=()):
    """A `Dataset` from an .npz or a folder of .npy files: its splits (given, or drawn by group or stratified
    from `x`/`y`), each input array checked (`_check_inputs`), the labels checked as values or class ids."""
    arrays = read_arrays(path)
    if isinstance(spec, Features) and spec.inputs:
        arrays = _packed(arrays, spec.inputs, path)
    if outputs:
        arrays = _packed_labels(arrays, outputs, path)
    (xtr, ytr, xte, yte), given = _splits(arrays, path, test_fraction, seed)
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise EdgeCompressError(f"{path} holds only one of `x_val` and `y_val`; a validation split needs both.")
    xva, yva = arrays.get("x_val"), arrays.get("y_val")
    for key, a in (("x_train", xtr), ("x_test", xte), *((("x_val", xva),) if xva is not None else ())):
        _check_inputs(a, key, spec, path)
    if values:  # regression targets: one value, or one column per output unit
        for key, a in (("y_train", ytr), ("y_test", yte), *((("y_val", yva),) if yva is not None else ())):
            a = np.asarray(a)
            if a.ndim not in (1, 2) or not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
                raise EdgeCompressError(f"{path}: `{key}` must hold finite regression targets, (N,) or (N, outputs); "
                                        f"got shape {a.shape} and dtype {a.dtype}.")
        width = 1 if np.ndim(ytr) == 1 else np.shape(ytr)[1]
        names = ([str(c) for c in arrays["class_names"]] if "class_names" in arrays else
                 ["value"] if width == 1 else [f"value_{i}" for i in range(width)])
        return _grouped(assemble(name, xtr, ytr, xte, yte, names, spec, f"examples of {path.name}", xva, yva,
                                 values=True), given, path)
    for key, a in (("y_train", ytr), ("y_test", yte), *((("y_val", yva),) if yva is not None else ())):
        a = np.asarray(a)
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer)
                               or (np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all()
                                   and np.all(a == np.round(a)))):
            raise EdgeCompressError(
                f"{path}: `{key}` must be a 1-D array of integer class ids; got "
                f"shape {a.shape} and dtype {a.dtype}."
            )
    ytr, yte = np.asarray(ytr).astype(np.int64), np.asarray(yte).astype(np.int64)
    if class_names is None:
        if "class_names" in arrays:
            class_names = [str(c) for c in arrays["class_names"]]
        else:
            class_names = [str(i) for i in range(int(max(ytr.max(), yte.max())) + 1)]
    return _grouped(assemble(name, xtr, ytr, xte, yte, class_names, spec, f"images of {path.name}",
                             xva, None if yva is None else np.asarray(yva).astype(np.int64)), given, path)


def _splits(arrays: dict, path, test_fraction, seed):
    """((x_train, y_train, x_test, y_test), the group ids given per split): the file's own splits, or `x`/`y`
    split by whole groups (when it has `groups`) or stratified."""
    given = {}  # split -> group ids given in the file
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        for split in ("train", "test", "val"):
            if f"groups_{split}" in arrays:
                if f"x_{split}" not in arrays:
                    raise EdgeCompressError(f"{path} holds `groups_{split}` but no `x_{split}`; groups go beside "
                                            "the examples they name.")
                given[split] = groups.check(arrays[f"groups_{split}"], len(arrays[f"x_{split}"]), path, split)
        return tuple(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")), given
    if {"x", "y"} <= arrays.keys():
        if "groups" in arrays:  # whole groups held out for testing: the test split measures new groups
            g = groups.check(arrays["groups"], len(arrays["x"]), path, "all")
            tr, te = groups.split(g, test_fraction, seed)
            given = {"train": g[tr], "test": g[te]}
        else:
            tr, te = stratified_split(strata(np.asarray(arrays["y"])), test_fraction, seed)
        y = np.asarray(arrays["y"])
        return (ondisk.take(arrays["x"], tr), y[tr], ondisk.take(arrays["x"], te), y[te]), given
    raise EdgeCompressError(
        f"{path} holds arrays {sorted(arrays)}; expected `x_train`, `y_train`, "
        "`x_test`, `y_test` (or `x` and `y`), with optional `class_names`."
    )


def _check_inputs(a, key: str, spec, path) -> None:
    """Refuses input array `a` (`x_train`...) that the model cannot take: features of another shape, not
    numbers, NaN or infinite values, or for an image model values that are not 0..255 pixels."""
    features = isinstance(spec, Features)
    if features and tuple(a.shape[1:]) != spec.shape:
        raise EdgeCompressError(f"{path}: `{key}` has examples of shape {tuple(a.shape[1:])} ({a.dtype}); the "
                                f"model takes features of shape {spec.shape} (its input is not an image). Pass "
                                "the data it was trained on, at that shape.")
    if not np.issubdtype(a.dtype, np.number):
        raise EdgeCompressError(f"{path}: `{key}` must be numeric, got dtype {a.dtype}.")
    lo, hi, bad = ondisk.stats(a)  # in chunks when the examples stay on disk
    if bad:
        raise EdgeCompressError(
            f"{path}: `{key}` contains NaN or infinite values "
            f"({bad} of them). Clean the data first."
        )
    if features:
        return  # features are fed as they are: no pixel range to check
    if len(a) and (lo < 0 or hi > 255):
        # Not pixels: cast to uint8, every number the build reports would be wrong, and nothing would say so.
        raise EdgeCompressError(
            f"{path}: `{key}` holds values in [{lo:.4g}, {hi:.4g}] ({a.dtype}), not "
            "0..255 pixels: features such as MFCCs, sensor series or tabular columns, which cast to pixels would "
            "be wrong. Features go with a model whose input is not an image (its shape is read from the model, "
            "and they are fed as they are); for an image model, store raw 0..255 pixels.")
    if np.issubdtype(a.dtype, np.floating) and len(a) and 0 < hi <= 1.0:
        raise EdgeCompressError(
            f"{path}: `{key}` looks already scaled to [0, 1]; store raw 0..255 "
            "pixels so the saved preprocessing can scale them the same way on device."
        )


def _grouped(ds: Dataset, given: dict, path) -> Dataset:
    """`ds` with the groups `given` in the file, or else (features only) the chains of overlapping windows found
    in each split (`data.groups.chain_windows`), logged; unchanged when neither."""
    if given:
        return dataclasses.replace(ds, groups_source=groups.GIVEN, **{f"groups_{k}": v for k, v in given.items()})
    if not isinstance(ds.preprocessing, Features):
        return ds
    found = {}
    for split in ("train", "test", "val"):
        x = getattr(ds, f"x_{split}")
        if x is None or ondisk.is_lazy(x):  # rows on disk are not read whole to look for chains
            continue
        g = groups.chain_windows(x)
        if g is not None and len(np.unique(g)) >= 2:
            found[split] = g
    if not found:
        return ds
    logger.info("%s: consecutive rows overlap like the windows of one recording; chained into %s (each chain is a "
                "group: held out whole, counted once in error bars). Give `groups_train`/`groups_test` to say "
                "otherwise.", path, ", ".join(f"{len(np.unique(g))} groups in `x_{k}`" for k, g in found.items()))
    return dataclasses.replace(ds, groups_source=groups.CHAINED, **{f"groups_{k}": v for k, v in found.items()})


def _packed(arrays: dict, layout, path) -> dict:
    """`arrays` with each split of a model of several inputs (`x_train/<input>`, ...) packed into one row per
    example (`lite.inputs.pack`), under the split's own key (`x_train`), as a model of one input has it."""
    names = [n for n, _ in layout]
    splits = ("x_train", "x_test", "x_val", "x")
    out = {k: v for k, v in arrays.items() if k.split("/", 1)[0] not in splits or "/" not in k}
    for key in splits:
        mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(key + "/")}
        if key in arrays and not mine:
            raise EdgeCompressError(
                f"{path}: `{key}` is one array, and the model takes {len(names)} inputs ({', '.join(names)}). Store "
                f"one array per input, named after it: {', '.join(f'`{key}/{n}`' for n in names)}.")
        if mine:
            out[key] = _pack_split(mine, layout, path, key)
    return out


def _pack_split(arrays: dict, layout, path, key: str):
    """One split of a model of several inputs as packed rows: in memory, or, from a folder of `.npy` whose
    packed rows are more than `ondisk.stream_bytes()`, packed once, a chunk of rows at a time, into the data
    cache and read from there as a batch needs them (`ondisk.DiskArray`), as a folder of images is decoded."""
    where = f"{path}: `{key}`"
    count = inputs.check_arrays(arrays, layout, where)
    row = sum(inputs.width(shape) for _, shape in layout)
    total = 4 * count * row
    if not Path(path).is_dir() or total <= ondisk.stream_bytes():
        return inputs.pack(arrays, layout, where=where)
    digest = hashlib.sha256(repr([(n, tuple(s)) for n, s in layout]).encode())
    for name, _ in layout:
        f = Path(path) / key / f"{name}.npy"
        st = f.stat()
        digest.update(f"\n{f.resolve()}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    cached = ondisk.cache_dir() / f"packed-{digest.hexdigest()[:24]}.npy"
    if cached.exists():
        logger.info("Reading %d packed rows of %s from %s (%.2f GB, on disk)", count, where, cached, total / 1e9)
        return ondisk.DiskArray(cached)
    logger.info("Packing %d examples of %s (%.2f GB of float32 rows, more than the %.2f GB held in memory: %s) into "
                "%s; each batch reads its rows from there", count, where, total / 1e9, ondisk.stream_bytes() / 1e9,
                ondisk.STREAM_ENV, cached)

    def rows():  # `ondisk.chunks` of the packed rows, sized by a view that holds none of them
        for start, stop in ondisk.chunks(np.broadcast_to(np.float32(0), (count, row))):
            yield from inputs.pack({n: a[start:stop] for n, a in arrays.items()}, layout, where=where)

    return ondisk.write_rows(cached, (row,), np.float32, count, rows())


def labelled_outputs(source) -> list[str]:
    """The outputs an .npz (or a folder of .npy) labels one by one (`y_train/<output>`), or [] (also for any
    other source): a model of several outputs is then built on all of them, each measured."""
    if source is None or str(source) in ("default", "fashion-mnist"):
        return []
    path = Path(source)
    if not ((path.is_file() and path.suffix == ".npz") or is_npy_folder(path)):
        return []
    return sorted(k.split("/", 1)[1] for k in array_names(path) if k.startswith("y_train/"))


def array_names(path) -> list[str]:
    """The names of the arrays an .npz or a folder of .npy holds (`read_arrays`' keys), read without the
    arrays themselves; [] for what cannot be read (the reader says what is wrong with it)."""
    path = Path(path)
    if path.is_dir():
        return [_npy_name(path, f) for f in _npy_files(path)]
    try:
        with np.load(path, allow_pickle=False) as z:
            return list(z.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return []


def read_array(path, name: str) -> np.ndarray:
    """One array of an .npz or a folder of .npy (`read_arrays`), without reading the others."""
    path = Path(path)
    if path.is_dir():
        return np.asarray(np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False))
    with np.load(path, allow_pickle=False) as z:
        return z[name]


def _packed_labels(arrays: dict, outputs, path) -> dict:
    """`arrays` with each split's labels of a model of several outputs (`y_train/<output>`, ...) as one row of
    columns per example (`lite.tasks.Output.label_columns` each: a class id, or the output's values), float32."""
    splits = ("y_train", "y_test", "y_val", "y")
    out = {k: v for k, v in arrays.items() if k.split("/", 1)[0] not in splits or "/" not in k}
    for key in splits:
        mine = {k.split("/", 1)[1]: np.asarray(v) for k, v in arrays.items() if k.startswith(key + "/")}
        if not mine:
            continue
        cols = []
        for o in outputs:
            if o.name not in mine:
                raise EdgeCompressError(f"{path}: no `{key}/{o.name}`; a model of several outputs measured each needs "
                                        f"labels for each of its outputs ({', '.join(x.name for x in outputs)}).")
            a = mine[o.name].reshape(len(mine[o.name]), -1).astype(np.float32)
            if a.shape[1] != o.label_columns or not np.isfinite(a).all():
                raise EdgeCompressError(
                    f"{path}: `{key}/{o.name}` has {a.shape[1]} column(s) per example; output {o.name!r} "
                    f"({o.task}, {o.width} units) takes {o.label_columns}"
                    f"{' (a class id)' if o.task == 'classification' else ' (one value per unit)'}, all finite.")
            if o.task == "classification" and (a.min() < 0 or a.max() >= max(o.width, 2) or (a != np.round(a)).any()):
                raise EdgeCompressError(f"{path}: `{key}/{o.name}` holds values from {a.min():g} to {a.max():g}; "
                                        f"output {o.name!r} has {o.width} classes: class ids 0..{max(o.width, 2) - 1}.")
            cols.append(a)
        out[key] = np.concatenate(cols, axis=1)
    return out
