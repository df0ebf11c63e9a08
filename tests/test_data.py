import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import write_png
from edgecompress.configs import Preprocessing
from edgecompress.data.images import DEBIAN_FASHION_MNIST, read_idx
from edgecompress.data.loading import BUNDLED_PATH, load_dataset
from edgecompress.errors import EdgeCompressError


def test_bundled_subset_is_small_stratified_and_licensed():
    assert BUNDLED_PATH.stat().st_size <= 8 * 1024 * 1024
    assert (BUNDLED_PATH.parent / "LICENSE-fashion-mnist.txt").exists()
    ds = load_dataset()
    assert ds.x_train.shape == (12000, 28, 28, 1) and ds.x_test.shape == (2000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [1200] * 10
    assert np.bincount(ds.y_test).tolist() == [200] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10
    assert ds.describe()["count"] == 2000


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_full_fashion_mnist_from_debian_idx_files():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.name == "fashion-mnist"


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_the_bundled_defaults_fresh_images_are_the_test_images_its_subset_lacks(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "scripts/make_bundled_fresh.py", str(tmp_path / "fresh.npz")], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "fresh.npz") as f, np.load(root / "edgecompress/_data/fashion_mnist_subset.npz") as b:
        x, y = f["x_test"], f["y_test"]
        held = {a.tobytes() for key in ("x_train", "x_test") for a in b[key]}
    assert x.shape == (8000, 28, 28) and np.bincount(y).tolist() == [800] * 10
    assert not any(a.tobytes() in held for a in x)
    assert "8000 of 10000 Fashion-MNIST test images are not in the bundled subset" in done.stderr


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (20, 28, 28)), np.arange(20) % 3
    for name, a in [("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y),
                    ("t10k-images-idx3-ubyte", x[:6]), ("t10k-labels-idx1-ubyte", y[:6])]:
        _write_idx(tmp_path / f"{name}.gz", a)
    ds = load_dataset(tmp_path)
    assert np.array_equal(ds.x_train[..., 0], x) and np.array_equal(ds.y_test, y[:6])
    assert np.array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte.gz"), y)


def test_idx_folder_missing_file(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 4, 4)))
    with pytest.raises(EdgeCompressError, match="lacks train-labels-idx1-ubyte"):
        load_dataset(tmp_path)


def _folder(root, classes, n=6, size=(20, 20), mode="RGB"):
    rng = np.random.default_rng(1)
    for c in classes:
        for i in range(n):
            shape = (*size, 3) if mode == "RGB" else size
            write_png(root / c / f"{i}.png", rng.integers(0, 255, shape, dtype=np.uint8), mode)
    return root


def test_image_folder_rgb_inferred_spec_and_split(tmp_path):
    ds = load_dataset(_folder(tmp_path / "d", ["cat", "dog", "emu"]))
    assert ds.class_names == ("cat", "dog", "emu")
    assert ds.preprocessing == Preprocessing(20, 20, 3)
    assert len(ds.y_train) + len(ds.y_test) == 18
    assert set(ds.y_test.tolist()) == {0, 1, 2}  # stratified


def test_image_folder_converted_to_model_spec(tmp_path, caplog):
    ds = load_dataset(_folder(tmp_path / "d", ["a", "b"]), Preprocessing(28, 28, 1))
    assert ds.x_train.shape[1:] == (28, 28, 1)
    assert sum("Resized" in r.message for r in caplog.records) == 1  # said once, not per image


def test_image_folder_with_train_and_test(tmp_path):
    _folder(tmp_path / "d" / "train", ["a", "b"], n=4, mode="L")
    _folder(tmp_path / "d" / "test", ["a", "b"], n=2, mode="L")
    ds = load_dataset(tmp_path / "d")
    assert len(ds.y_train) == 8 and len(ds.y_test) == 4 and ds.preprocessing.channels == 1


@pytest.mark.parametrize("setup, needle", [
    (lambda p: (p / "x.png").write_bytes(b""), "has no class sub-folders"),
    (lambda p: _folder(p, ["only"]), "only one class sub-folder"),
    (lambda p: (_folder(p, ["a"]), (p / "b").mkdir()), r"\['b'\].*hold no images"),
])
def test_bad_folders(tmp_path, setup, needle):
    d = tmp_path / "d"
    d.mkdir()
    setup(d)
    with pytest.raises(EdgeCompressError, match=needle):
        load_dataset(d)


def test_missing_path():
    with pytest.raises(EdgeCompressError, match="does not exist"):
        load_dataset("/nonexistent/data")


def test_npz_xy_with_class_names(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, x=rng.integers(0, 255, (40, 8, 8)), y=np.arange(40) % 4, class_names=np.array(list("abcd")))
    ds = load_dataset(p)
    assert ds.class_names == tuple("abcd") and len(ds.y_train) + len(ds.y_test) == 40


@pytest.mark.parametrize("arrays, needle", [
    ({"x": np.full((4, 8, 8), np.nan), "y": np.arange(4) % 2}, "NaN or infinite"),
    ({"x": np.full((4, 8, 8), np.inf), "y": np.arange(4) % 2}, "NaN or infinite"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.array([0, 1, 2, 7]), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.array([0, 1]), "class_names": np.array(["a", "b", "c"])}, r"labels must lie in \[0, 2\]"),
    ({"x_train": np.zeros((4, 8, 8)), "y_train": np.array([0, 1, -1, 0]), "x_test": np.zeros((2, 8, 8)),
      "y_test": np.array([0, 1])}, "labels must lie in"),
    ({"images": np.zeros((4, 8, 8))}, "expected `x_train`"),
    ({"x": np.random.rand(4, 8, 8), "y": np.arange(4) % 2}, "already scaled"),
    # A keyword spotter's MFCCs (MLPerf Tiny's range): refused, not cast to pixels in silence.
    ({"x_train": np.random.default_rng(0).uniform(-116, 31, (4, 49, 10, 1)).astype("float32"),
      "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 49, 10, 1), "float32"), "y_test": np.array([0, 1])},
     r"`x_train` holds values in \[-11\d.*, \d+.*\] \(float32\), not 0..255 pixels"),
    ({"x": np.arange(4 * 64).reshape(4, 64).astype("int16") * 100, "y": np.arange(4) % 2}, "not 0..255 pixels"),
])
def test_bad_npz(tmp_path, arrays, needle):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(EdgeCompressError, match=needle):
        load_dataset(p)


def test_not_an_npz(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"garbage")
    with pytest.raises(EdgeCompressError, match="Cannot read .* as an .npz"):
        load_dataset(p)
