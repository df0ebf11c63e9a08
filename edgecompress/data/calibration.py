"""The representative dataset for int8 calibration, stored as PNG files.

`calibration_data/` holds a few hundred images, stratified by class, one
sub-folder per class. They are read with Pillow through the model's
`Preprocessing`, validated first (every file must decode; there must be
enough of them), then fed to the converter as float32 arrays of the model's
input shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgecompress.configs import Preprocessing
from edgecompress.data.dataset import Dataset, strata
from edgecompress.lite import tasks
from edgecompress.errors import EdgeCompressError
from edgecompress.data.preprocessing import IMAGE_SUFFIXES, ConversionNotice, load_image, to_model_input

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path("calibration_data")
MIN_IMAGES = 10


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "class"


def write_calibration_images(dataset: Dataset, out_dir=DEFAULT_DIR, *, per_class: int = 20, seed: int = 0) -> Path:
    """Writes `per_class` training images of each class as PNG files.

    The folder is rebuilt beside the old one and swapped in at the end, so an
    interrupted run leaves the previous calibration set intact.
    """
    from PIL import Image

    if per_class < 1:
        raise EdgeCompressError(
            f"Received an invalid value for `per_class`, expected an integer >= 1. Received: per_class={per_class!r}"
        )
    out_dir = Path(out_dir)
    chosen_by_class = _chosen(dataset, per_class, seed)
    digest = hashlib.sha256(f"{seed}\n{list(dataset.class_names)}\n".encode())
    for chosen in chosen_by_class:
        digest.update(np.ascontiguousarray(dataset.x_train[chosen]).tobytes())
    digest = digest.hexdigest()
    try:  # the same images already there (written by this build's main process for its search workers): keep
        if json.loads((out_dir / "manifest.json").read_text()).get("sha256") == digest:
            return out_dir
    except (OSError, ValueError):
        pass
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        counts = {}
        for label, (name, chosen) in enumerate(zip(dataset.class_names, chosen_by_class)):
            sub = tmp / f"{label}_{_slug(name)}"
            sub.mkdir()
            for i, j in enumerate(chosen):
                px = dataset.x_train[j]
                img = Image.fromarray(px[..., 0], "L") if px.shape[-1] == 1 else Image.fromarray(px, "RGB")
                img.save(sub / f"{i:03d}.png", optimize=True)
            counts[name] = len(chosen)
        (tmp / "manifest.json").write_text(json.dumps({
            "dataset": dataset.name, "seed": seed, "per_class": counts,
            "preprocessing": dataset.preprocessing.to_dict(), "sha256": digest,
        }, indent=2) + "\n")
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            if old.exists():
                shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote %d calibration images to %s", sum(counts.values()), out_dir)
    return out_dir


def _chosen(dataset: Dataset, per_class: int, seed: int) -> list[list[int]]:
    """For each class, `per_class` of its training examples (all, if fewer), seeded, in index order: the one
    draw both calibration sets use."""
    rng = np.random.default_rng(seed)
    out = []
    # Regression targets have no classes: their deciles stand in (`dataset.strata`).
    t = tasks.task(dataset.task)
    if isinstance(t, tasks.SeveralOutputs):  # the judged output's classes, or its deciles (`group_names`)
        groups, count = t.groups(dataset.y_train), dataset.num_classes
    else:
        groups = strata(dataset.y_train) if t.value_labels else dataset.y_train
        count = 10 if t.value_labels else dataset.num_classes
    for label in range(count):
        idx = np.flatnonzero(groups == label)
        out.append(sorted(rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()))
    return out


def feature_sample(dataset: Dataset, *, per_class: int = 20, seed: int = 0) -> np.ndarray:
    """The representative set of a features dataset: the same draw as `write_calibration_images`, kept as
    arrays (features have no image files to write)."""
    return np.asarray(dataset.x_train[sorted(sum(_chosen(dataset, per_class, seed), []))], np.float32)


def calibration_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeCompressError(
            f"Calibration folder {folder} does not exist. Create it with "
            "`invoke calibration-data`, or pass `--calibration DIR`."
        )
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def checked_files(folder, min_count: int = MIN_IMAGES) -> list[Path]:
    """The image files of a calibration folder, refused when it is missing or holds fewer than `min_count`: a build
    calls it before any training, so a wrong `--calibration` fails in seconds (nothing is decoded here)."""
    files = calibration_files(folder)
    if len(files) < min_count:
        raise EdgeCompressError(
            f"Calibration folder {folder} holds {len(files)} image(s); int8 "
            f"calibration needs at least {min_count} (a few hundred is better). "
            "Regenerate it with `invoke calibration-data`."
        )
    return files


def load_calibration_images(folder, spec: Preprocessing, *, min_count: int = MIN_IMAGES, limit: int | None = None) -> np.ndarray:
    """Reads and validates every calibration image; returns uint8 (N, H, W, C).

    Raises:
        EdgeCompressError: when the folder is missing, holds fewer than
            `min_count` images, or a file does not decode (the file is named).
    """
    files = checked_files(folder, min_count)
    if limit is not None:
        files = files[:limit]
    notice = ConversionNotice()
    pixels = np.stack([load_image(f, spec, notice) for f in files])
    notice.log("calibration images")
    return pixels


def representative_dataset(pixels: np.ndarray, spec: Preprocessing):
    """Returns a generator function for `TFLiteConverter.representative_dataset`."""
    x = to_model_input(pixels, spec)
    if not np.isfinite(x).all():
        raise EdgeCompressError("Calibration inputs contain NaN or infinite values after preprocessing.")

    def gen():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    return gen


def random_representative(input_shape, samples: int = 8, seed: int = 0):
    """A representative dataset of `samples` seeded uniform [0, 1) inputs of `input_shape`: enough to convert a
    model and read the file back (which ops it has, which runtime runs it) before any real data is read. Its
    numbers calibrate nothing a build keeps."""
    rng = np.random.default_rng(seed)

    def gen():
        for _ in range(samples):
            yield [rng.random((1, *input_shape), dtype=np.float32)]

    return gen
