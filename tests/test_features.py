"""Models whose inputs are features, not images (issue 21's first step): MFCC-like (49, 10, 1) tensors and
flat vectors, fed as they are, through every stage of a build."""

import json

import numpy as np
import pytest

from edgecompress.configs import Features, ModelSpec, Preprocessing, input_spec
from edgecompress.data.calibration import feature_sample
from edgecompress.data.arrays import npz_holds_features
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EdgeCompressError


def _kws_like(n_train=800, n_test=400, classes=4, seed=0, shape=(49, 10, 1)):
    """Seeded stand-in for MFCCs: each class a band of energy at its own time and coefficient, in MLPerf Tiny's
    value range (about -116 to 31), with noise."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = np.arange(n) % classes
    t = np.arange(shape[0])[:, None]
    c = np.arange(shape[1])[None, :]
    x = rng.normal(-60, 12, (n, *shape[:2])).astype("float32")
    for k in range(classes):
        bump = 45 * np.exp(-((t - 8 - 10 * k) ** 2) / 30 - ((c - 2 * k) ** 2) / 4)
        x[y == k] += bump.astype("float32")
    x = np.clip(x, -116, 31).reshape(n, *shape)
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:],
            "class_names": np.array(["yes", "no", "up", "down"][:classes])}


def test_a_features_spec_round_trips_and_is_told_apart_from_an_image_spec():
    f = Features((49, 10, 1))
    assert input_spec(f.to_dict()) == f and f.scale == "raw" and f.input_shape == (49, 10, 1)
    assert isinstance(input_spec(Preprocessing().to_dict()), Preprocessing)
    assert ModelSpec.from_dict(ModelSpec(f, ("a", "b")).to_dict()).preprocessing == f
    with pytest.raises(EdgeCompressError, match=r"shape=\(0,\)"):
        Features((0,))


def test_features_load_as_they_are_and_calibrate_from_training_examples(tmp_path):
    arrays = _kws_like(n_train=80, n_test=20)
    np.savez(tmp_path / "kws.npz", **arrays)
    assert npz_holds_features(tmp_path / "kws.npz")
    ds = load_dataset(tmp_path / "kws.npz", Features((49, 10, 1)))
    assert ds.x_train.dtype == np.float32 and np.array_equal(ds.x_train, arrays["x_train"])  # not cast, not scaled
    sample = feature_sample(ds, per_class=3, seed=0)
    assert sample.shape == (12, 49, 10, 1) and np.array_equal(sample, feature_sample(ds, per_class=3, seed=0))
    with pytest.raises(EdgeCompressError, match=r"shape \(49, 10, 1\) \(float32\); the model takes features of shape \(490,\)"):
        load_dataset(tmp_path / "kws.npz", Features((490,)))
    with pytest.raises(EdgeCompressError, match="is a folder, and the model takes features"):
        load_dataset(tmp_path, Features((49, 10, 1)))
    # Pixels are still pixels: a uint8 .npz is not features.
    np.savez(tmp_path / "img.npz", x=np.zeros((8, 4, 4), np.uint8), y=np.arange(8) % 2)
    assert not npz_holds_features(tmp_path / "img.npz")
    assert not npz_holds_features(None) and not npz_holds_features("fashion-mnist")  # the bundled and Debian's images


def _ds_cnn(classes=4):
    """A small DS-CNN (MLPerf Tiny's keyword-spotting shape: a 10x4 input conv, depthwise-separable blocks,
    average pooling), in Keras 3."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 10, 1))
    x = keras.layers.Conv2D(16, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    for _ in range(2):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(16, 1, use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.AveragePooling2D(pool_size=(25, 5))(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.slow
def test_a_keyword_spotter_on_mfcc_like_features_goes_through_every_stage(tmp_path, root):
    """A Keras 3 DS-CNN on (49, 10, 1) float features in [-116, 31]: read as features (not cast to pixels),
    calibrated from its training examples, distilled, pruned and quantized; each file measured on the
    features as they are."""
    from conftest import run_invoke

    arrays = _kws_like()
    np.savez(tmp_path / "kws.npz", **arrays)
    model = _ds_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(arrays["x_train"], arrays["y_train"], epochs=8, batch_size=32, verbose=0)
    keras_top1 = float((model.predict(arrays["x_test"], verbose=0).argmax(1) == arrays["y_test"]).mean())
    assert keras_top1 > 0.8, keras_top1
    model.save(tmp_path / "kws.keras")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"name": "kws", "stages": [
        {"stage": "distill", "width": 0.5, "epochs": 4, "baseline": False},
        {"stage": "prune", "final_sparsity": 0.5, "epochs": 2}], "quantize": ["float32", "int8"]}))
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "kws.keras"), "--data", str(tmp_path / "kws.npz"),
                       "--recipe", str(recipe), "--out", str(out), "--runs", "20"], cwd=root, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "features of shape (49, 10, 1), fed to the model as they are" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model_spec"]["preprocessing"] == {"shape": [49, 10, 1], "kind": "features"}
    assert report["calibration"]["count"] == 80 and "features" in report["calibration"]["path"]
    arts = {a["name"]: a for a in report["artifacts"]}
    teacher = arts["teacher_float32"]["accuracy"]
    assert abs(teacher - keras_top1) <= 0.01, (teacher, keras_top1)  # the model's own file, on the same features
    # Calibrated on the features as they are, int8 keeps the float student's answers (here 98.5% agree).
    assert arts["int8"]["accuracy"] >= arts["float32"]["accuracy"] - 0.05 and arts["int8"]["agreement"] >= 0.95, arts
    assert arts["float32"]["accuracy"] > 0.7  # a half-width student after 4 + 2 epochs
    assert arts["int8"]["gzip_bytes"] < arts["teacher_float32"]["gzip_bytes"] / 2
    assert ModelSpec.from_dict(json.loads((out / "model_spec.json").read_text())).preprocessing == Features((49, 10, 1))


@pytest.mark.slow
def test_a_flat_vector_model_quantizes(tmp_path, root):
    """An MLP on (490,) vectors (a non-image input shape) goes through quantize-only."""
    import keras

    from conftest import run_invoke

    arrays = _kws_like(n_train=600, n_test=300)
    for k in ("x_train", "x_test"):
        arrays[k] = arrays[k].reshape(len(arrays[k]), -1)
    np.savez(tmp_path / "v.npz", **arrays)
    keras.utils.set_random_seed(0)
    inp = keras.Input((490,))
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Normalization(mean=-50.0, variance=400.0)(inp))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(arrays["x_train"], arrays["y_train"], epochs=10, batch_size=32, verbose=0)
    model.save(tmp_path / "mlp.keras")
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "mlp.keras"), "--data", str(tmp_path / "v.npz"),
                       "--recipe", "quantize-only", "--out", str(out), "--runs", "20"], cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arts = {a["name"]: a for a in json.loads((out / "report.json").read_text())["artifacts"]}
    assert arts["float32"]["accuracy"] > 0.8 and arts["int8"]["accuracy"] >= arts["float32"]["accuracy"] - 0.05
