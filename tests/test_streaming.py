"""Data that stays on disk (`edgecompress/data/ondisk.py`): the same images, splits and numbers as in memory,
and a peak RSS that does not follow the image count."""

import hashlib
import pickle

import numpy as np
import pytest

from edgecompress.configs import Preprocessing
from edgecompress.data import ondisk
from edgecompress.data.loading import load_dataset
from edgecompress.data.preprocessing import to_model_input


@pytest.fixture
def on_disk(tmp_path, monkeypatch):
    """Every folder streams (threshold 0), into a cache of this test's own."""
    monkeypatch.setenv(ondisk.STREAM_ENV, "0")
    monkeypatch.setenv(ondisk.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _folder(root, n=60, size=12, classes=3, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


def test_a_disk_array_reads_what_numpy_would(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (50, 4, 3, 3), dtype=np.uint8)
    a = ondisk.write_rows(tmp_path / "a.npy", (4, 3, 3), np.uint8, len(x), iter(x))
    assert (np.load(tmp_path / "a.npy") == x).all()  # a plain .npy file
    idx = np.random.default_rng(1).permutation(50)[:20]
    view = a.take(idx)
    assert len(view) == 20 and view.shape == (20, 4, 3, 3)
    for key in (3, -1, slice(2, 9), [4, 1, 1], idx[:5]):
        assert (a[key] == x[key]).all()
    assert (view[2:7] == x[idx[2:7]]).all() and (view.take([3, 0])[:] == x[idx[[3, 0]]]).all()
    assert (a[x[:, 0, 0, 0] > 128] == x[x[:, 0, 0, 0] > 128]).all() and (a[5:9, 1] == x[5:9, 1]).all()
    assert (np.asarray(view) == x[idx]).all()
    assert (pickle.loads(pickle.dumps(view))[:] == x[idx]).all()
    assert a.digest() == hashlib.sha256(x.tobytes()).hexdigest() and view.digest() != a.digest()
    scaled = to_model_input(view, Preprocessing(4, 3, 3, scale="unit"))
    assert isinstance(scaled, ondisk.Scaled) and scaled.dtype == np.float32
    np.testing.assert_allclose(scaled[1:4], x[idx[1:4]] / 255.0, rtol=1e-6)
    with pytest.raises(IndexError):
        a[50]


def test_a_streamed_folder_holds_the_same_images_in_the_same_order(tmp_path, on_disk, monkeypatch, caplog):
    folder = _folder(tmp_path / "imgs")
    streamed = load_dataset(folder)
    assert isinstance(streamed.x_train, ondisk.DiskArray) and isinstance(streamed.x_test, ondisk.DiskArray)
    monkeypatch.setenv(ondisk.STREAM_ENV, str(1 << 40))
    held = load_dataset(folder)
    assert isinstance(held.x_train, np.ndarray)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert (np.asarray(getattr(streamed, name)) == getattr(held, name)).all(), name
    (sj, sr, _), (hj, hr, _) = streamed.held_out(seed=0), held.held_out(seed=0)
    assert (np.asarray(sj.x_test) == hj.x_test).all() and (np.asarray(sr.x_test) == hr.x_test).all()
    sv, hv = streamed.validation_split(0.2, seed=3), held.validation_split(0.2, seed=3)
    assert (np.asarray(sv.x_test) == hv.x_test).all() and (np.asarray(sv.x_train) == hv.x_train).all()
    # Decoded once: a second load reads the cache; a changed image is decoded anew.
    monkeypatch.setenv(ondisk.STREAM_ENV, "0")
    caplog.set_level("INFO")
    again = load_dataset(folder)
    assert "decoded images of" in caplog.text and again.fingerprint() == streamed.fingerprint()
    assert len(list(on_disk.glob("images-*.npy"))) == 1
    victim = sorted((folder / "c0").glob("*.png"))[0]
    from PIL import Image

    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(victim)
    changed = load_dataset(folder)
    assert changed.fingerprint() != streamed.fingerprint() and len(list(on_disk.glob("images-*.npy"))) == 2


def test_a_model_trains_and_predicts_on_rows_read_from_disk(tmp_path, on_disk):
    from edgecompress.configs import TrainConfig
    from edgecompress.models.backend import keras
    from edgecompress.models.training import keras_metric, predict, train

    ds = load_dataset(_folder(tmp_path / "imgs", n=90))
    assert isinstance(ds.x_train, ondisk.DiskArray)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    hist = train(model, ds, TrainConfig(epochs=2, batch_size=16), verbose=0)
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["val_loss"]).all()
    x = to_model_input(ds.x_test, ds.preprocessing)
    np.testing.assert_allclose(predict(model, x), model.predict(np.asarray(x), verbose=0), rtol=1e-5, atol=1e-6)
    assert 0.0 <= keras_metric(model, ds) <= 1.0


@pytest.mark.slow
def test_peak_rss_of_build_edge_does_not_follow_the_image_count(tmp_path, monkeypatch):
    """build-edge (prune one epoch, float32 and int8) on 3,000 and on 15,000 64x64 images, on disk. Held in
    memory, 12,000 images more would add their pixels (147 MB) and a float32 copy (590 MB) at least. Both
    counts fill the prediction batch (below a few hundred test images its activations grow with the count)."""
    from benchmarks.streaming import measure

    monkeypatch.setenv(ondisk.CACHE_ENV, str(tmp_path / "cache"))
    small = measure(3000, tmp_path / "s3000", size=64, stream_bytes=0)
    large = measure(15000, tmp_path / "s15000", size=64, stream_bytes=0)
    for row in (small, large):
        assert row["returncode"] == 0, open(row["log"]).read()[-3000:]
        assert row["streamed"] and row["top1"]["int8"] > 0.5, row
    grown = large["peak_rss_bytes"] - small["peak_rss_bytes"]
    decoded = large["decoded_bytes"] - small["decoded_bytes"]
    assert grown < 0.5 * decoded, (grown, decoded)
    print(f"peak RSS: {small['peak_rss_bytes'] / 1e6:.0f} MB, then {large['peak_rss_bytes'] / 1e6:.0f} MB")


def test_npy_features_above_the_threshold_stay_on_disk_and_are_checked_there(tmp_path, on_disk, monkeypatch):
    from edgecompress.configs import Features
    from edgecompress.errors import EdgeCompressError

    rng = np.random.default_rng(0)
    folder = tmp_path / "kws"
    folder.mkdir()
    x = {"x_train": rng.normal(-40, 30, (80, 49, 10, 1)), "x_test": rng.normal(-40, 30, (40, 49, 10, 1))}
    for k, a in x.items():
        np.save(folder / f"{k}.npy", a)  # float64: cast as rows are read
    np.save(folder / "y_train.npy", rng.integers(0, 4, 80))
    np.save(folder / "y_test.npy", np.arange(40) % 4)
    spec = Features((49, 10, 1))
    streamed = load_dataset(folder, spec)
    assert isinstance(streamed.x_train, ondisk.Scaled) and streamed.x_train.dtype == np.float32
    monkeypatch.setenv(ondisk.STREAM_ENV, str(1 << 40))
    held = load_dataset(folder, spec)
    assert isinstance(held.x_train, np.ndarray)
    assert (np.asarray(streamed.x_train) == held.x_train).all() and streamed.fingerprint() != ""
    (sj, _, _), (hj, _, _) = streamed.held_out(), held.held_out()
    assert (np.asarray(sj.x_test) == hj.x_test).all()
    monkeypatch.setenv(ondisk.STREAM_ENV, "0")
    bad = x["x_test"].copy()
    bad[7, 3, 2, 0] = np.nan
    np.save(folder / "x_test.npy", bad)
    with pytest.raises(EdgeCompressError, match="`x_test` contains NaN or infinite values \\(1 of them\\)"):
        load_dataset(folder, spec)


def test_the_streaming_benchmark_recipe_is_a_recipe_file():
    """`invoke benchmark-stream`'s recipe is data beside it (`benchmarks/stream-recipe.json`), loaded as any."""
    from benchmarks.streaming import RECIPE
    from edgecompress.recipes.recipe import load_recipe

    r = load_recipe(RECIPE)
    assert r.name == "stream" and [s.STAGE for s in r.stages] == ["prune"] and len(r.quantize) == 2
