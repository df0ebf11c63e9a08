import numpy as np
import pytest

from edgecompress.data.calibration import (
    calibration_files,
    load_calibration_images,
    representative_dataset,
    write_calibration_images,
)
from edgecompress.configs import Preprocessing
from edgecompress.errors import EdgeCompressError


def test_committed_calibration_set(root):
    files = calibration_files(root / "calibration_data")
    assert len(files) == 200
    per_class = {}
    for f in files:
        per_class[f.parent.name] = per_class.get(f.parent.name, 0) + 1
    assert sorted(per_class.values()) == [20] * 10


def test_regenerate_round_trip(tmp_path, tiny_dataset):
    out = write_calibration_images(tiny_dataset, tmp_path / "cal", per_class=3, seed=1)
    px = load_calibration_images(out, tiny_dataset.preprocessing, min_count=30)
    assert px.shape == (30, 28, 28, 1) and px.dtype == np.uint8
    # the pixels are exactly training images (PNG is lossless)
    flat = {tiny_dataset.x_train[i].tobytes() for i in range(len(tiny_dataset.x_train))}
    assert all(p.tobytes() in flat for p in px)
    # regenerating swaps the folder in whole
    write_calibration_images(tiny_dataset, out, per_class=2, seed=1)
    assert len(calibration_files(out)) == 20


def test_empty_folder(tmp_path):
    (tmp_path / "cal").mkdir()
    with pytest.raises(EdgeCompressError, match=r"holds 0 image\(s\).*invoke calibration-data"):
        load_calibration_images(tmp_path / "cal", Preprocessing())


def test_missing_folder(tmp_path):
    with pytest.raises(EdgeCompressError, match="does not exist"):
        load_calibration_images(tmp_path / "nope", Preprocessing())


def test_non_image_with_image_name_is_named(tmp_path, tiny_dataset):
    out = write_calibration_images(tiny_dataset, tmp_path / "cal", per_class=2)
    bad = out / "3_dress" / "zz_notes.png"
    bad.write_text("not a picture")
    with pytest.raises(EdgeCompressError, match="zz_notes.png"):
        load_calibration_images(out, tiny_dataset.preprocessing)


def test_representative_dataset_yields_model_inputs(calibration_pixels):
    spec = Preprocessing()
    batches = list(representative_dataset(calibration_pixels, spec)())
    assert len(batches) == 200
    x = batches[0][0]
    assert x.dtype == np.float32 and x.shape == (1, 28, 28, 1) and 0 <= x.min() and x.max() <= 1


def test_the_same_set_is_not_written_again(tmp_path, tiny_dataset):
    """Search workers call the writer on the folder their build's main process wrote: the same images are
    kept as they are, not swapped out under the other worker (two workers swapping one folder crashed one:
    FileNotFoundError in rmtree, measured in tests/test_optimize.py's two-worker resume)."""
    import dataclasses
    import json

    from edgecompress.data.calibration import write_calibration_images

    out = write_calibration_images(tiny_dataset, tmp_path / "cal", per_class=2, seed=0)
    first = (out / "manifest.json").stat().st_mtime_ns
    assert json.loads((out / "manifest.json").read_text())["sha256"]
    assert write_calibration_images(tiny_dataset, tmp_path / "cal", per_class=2, seed=0) == out
    assert (out / "manifest.json").stat().st_mtime_ns == first  # untouched
    other = dataclasses.replace(tiny_dataset, x_train=255 - tiny_dataset.x_train)
    write_calibration_images(other, tmp_path / "cal", per_class=2, seed=0)
    assert (out / "manifest.json").stat().st_mtime_ns != first  # other images: written again
