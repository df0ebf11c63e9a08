"""Tasks as data (issue 21): anomaly detection by ROC-AUC of an autoencoder's reconstruction error, through
loading, every stage, the interpreter and the report; and MLPerf Tiny's architectures and stand-in data."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.lite.scores import anomaly_scores, roc_auc
from edgecompress.lite.tasks import TASKS, task


def test_roc_auc_is_the_share_of_pairs_ranked_right_with_ties_counting_half():
    rng = np.random.default_rng(0)
    scores, truth = rng.integers(0, 5, 300).astype(float), rng.integers(0, 2, 300)
    pos, neg = scores[truth == 1], scores[truth == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(scores, truth) == pytest.approx(brute, abs=1e-12)
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    with pytest.raises(EdgeCompressError, match="the labels hold 0 anomalous and 3 normal"):
        roc_auc([1, 2, 3], [0, 0, 0])


def test_an_anomaly_score_is_the_reconstruction_error_or_the_one_output():
    x = np.zeros((3, 4))
    assert np.allclose(anomaly_scores(x, np.ones((3, 4)) * [[1], [2], [3]]), [1, 4, 9])
    assert np.allclose(anomaly_scores(x, np.array([[0.2], [0.1], [0.9]])), [0.2, 0.1, 0.9])
    with pytest.raises(EdgeCompressError, match="outputs 2 values"):
        anomaly_scores(x, np.zeros((3, 2)))


def test_the_task_registry_names_its_tasks_and_refuses_others():
    assert set(TASKS) == {"classification", "anomaly", "regression", "multilabel"}
    assert task("anomaly").says(0.84123) == "ROC-AUC 0.8412" and task("classification").says(0.97) == "top-1 97.00%"
    assert task("anomaly").predictions(np.zeros((2, 3))) is None
    with pytest.raises(EdgeCompressError, match=r"expected one of \[.anomaly., .classification., .multilabel., .regression.\]. Received: task='x'"):
        task("x")


def _ad_arrays(n_train=600, n_test=200, dims=64, seed=0):
    """Normal examples on a 4-dimensional subspace; anomalies leave it in 8 coordinates."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(0, 1, (4, dims))

    def normal(n):
        return (rng.normal(0, 1, (n, 4)) @ basis + rng.normal(0, 0.2, (n, dims))).astype("float32")

    anomalies = normal(n_test // 2)
    anomalies[:, rng.integers(0, dims, 8)] += rng.normal(0, 3, (n_test // 2, 8)).astype("float32")
    return {"x_train": normal(n_train), "y_train": np.zeros(n_train, np.int64),
            "x_test": np.concatenate([normal(n_test // 2), anomalies]),
            "y_test": np.r_[np.zeros(n_test // 2), np.ones(n_test // 2)].astype(np.int64),
            "class_names": np.array(["normal", "anomaly"])}


def test_anomaly_data_needs_labels_0_and_1_and_both_in_the_test_split(tmp_path):
    from edgecompress.configs import Features
    from edgecompress.data.loading import load_dataset

    arrays = _ad_arrays(60, 20)
    np.savez(tmp_path / "ad.npz", **arrays)
    ds = load_dataset(tmp_path / "ad.npz", Features((64,)), task="anomaly")
    assert ds.task == "anomaly" and ds.describe()["task"] == "anomaly" and ds.model_spec().task == "anomaly"
    assert ds.fingerprint() != load_dataset(tmp_path / "ad.npz", Features((64,))).fingerprint()
    np.savez(tmp_path / "one.npz", **{**arrays, "y_test": np.zeros(20, np.int64)})
    with pytest.raises(EdgeCompressError, match="the test split needs normal"):
        load_dataset(tmp_path / "one.npz", Features((64,)), task="anomaly")
    np.savez(tmp_path / "three.npz", **{**arrays, "y_test": np.arange(20) % 3, "class_names": np.array(["a", "b", "c"])})
    with pytest.raises(EdgeCompressError, match=r"y_test holds \[0, 1, 2\]"):
        load_dataset(tmp_path / "three.npz", Features((64,)), task="anomaly")


def test_a_model_whose_output_has_its_input_shape_is_an_anomaly_detector():
    from edgecompress.models.backend import keras
    from edgecompress.models.keras_io import model_task

    inp = keras.Input((64,))
    assert model_task(keras.Model(inp, keras.layers.Dense(64)(keras.layers.Dense(8)(inp)))) == "anomaly"
    assert model_task(keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))) == "classification"


def test_an_auc_at_one_half_is_at_chance_and_a_report_writes_roc_auc():
    from edgecompress.models.sanity import ImplausibleResult, check_stage
    from edgecompress.report.tables import artifact_table

    with pytest.raises(ImplausibleResult, match=r"ROC-AUC is 0.5100, at chance \(0.5000"):
        check_stage("prune", 0.51, num_classes=2, task="anomaly")
    check_stage("prune", 0.70, num_classes=2, task="anomaly")  # 0.70 < 1.5 x 0.5, and yet it ranks
    arts = [{"name": n, "quantization": "none", "size_bytes": 1000, "gzip_bytes": 900, "accuracy": a,
             "agreement": None, "latency_ms": {"p50": 0.01, "p90": 0.02}} for n, a in (("float32", 0.9), ("int8", 0.8871))]
    rows = artifact_table({"artifacts": arts, "baseline": "float32", "dataset": {"task": "anomaly"}})
    assert rows[0][5:7] == ["ROC-AUC", "delta"] and rows[2][5:7] == ["0.8871", "-0.0129"]


def _autoencoder(dims=64, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((dims,))
    x = inp
    for units in (32, 8, 32):
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Dense(units)(x)))
    return keras.Model(inp, keras.layers.Dense(dims)(x), name="ae")


def _trained_autoencoder(tmp_path):
    """`_autoencoder` trained by MSE on `_ad_arrays`' normal examples, saved as `ae.keras` beside `ad.npz`."""
    arrays = _ad_arrays()
    np.savez(tmp_path / "ad.npz", **arrays)
    model = _autoencoder()
    model.compile("adam", "mse")
    model.fit(arrays["x_train"], arrays["x_train"], epochs=30, batch_size=32, verbose=0)
    model.save(tmp_path / "ae.keras")
    return arrays, model


@pytest.mark.slow
def test_an_autoencoder_goes_through_distill_prune_cluster_and_int8_judged_by_roc_auc(tmp_path):
    """A Keras 3 dense autoencoder (MLPerf Tiny's shape, small) on an .npz of normal training examples and a
    test split of normal and anomalous ones: `build-edge` infers the task, trains every stage on the
    reconstruction (distillation by MSE against the teacher), and measures ROC-AUC with the interpreter."""
    arrays, model = _trained_autoencoder(tmp_path)
    keras_auc = roc_auc(anomaly_scores(arrays["x_test"], model.predict(arrays["x_test"], verbose=0)), arrays["y_test"])
    assert keras_auc > 0.9
    recipe = {"name": "ae", "stages": [
        {"stage": "distill", "width": 0.75, "epochs": 20, "alpha": 0.5},
        {"stage": "prune", "final_sparsity": 0.5, "epochs": 6},
        {"stage": "cluster", "number_of_clusters": 16, "epochs": 2}],
        "quantize": ["float32", "int8"]}
    (tmp_path / "ae.json").write_text(json.dumps(recipe))
    proc = subprocess.run([sys.executable, "-m", "edgecompress", "build-edge", "--model", str(tmp_path / "ae.keras"),
                           "--data", str(tmp_path / "ad.npz"), "--recipe", str(tmp_path / "ae.json"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Task: anomaly, judged by ROC-AUC of the reconstruction error" in proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"]["task"] == "anomaly" and report["model_spec"]["task"] == "anomaly"
    arts = {a["name"]: a for a in report["artifacts"]}
    assert abs(arts["teacher_float32"]["accuracy"] - keras_auc) < 1e-3  # the interpreter agrees with Keras
    stages = {s["stage"]: s for s in report["stages"]}
    assert set(stages) >= {"distill", "prune", "cluster"}
    assert stages["prune"]["metrics"]["sparsity"] > 0.3
    assert arts["int8"]["accuracy"] > 0.85 and arts["int8"]["agreement"] is None
    assert arts["int8"]["gzip_bytes"] < arts["teacher_float32"]["gzip_bytes"] / 4
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| ROC-AUC | delta |" in md and "Task: anomaly, measured by ROC-AUC" in md


# ---------------------------------------------------------------- MLPerf Tiny's four

def test_mlperf_tiny_architectures_have_the_reference_shapes():
    """The reference int8 files of mlcommons/tiny hold these kernels (read with the interpreter): DS-CNN's
    (64, 10, 4, 1) input conv and 64-channel blocks, ResNet-8's 16/32/64 filters, the autoencoder's 640-128-8."""
    import keras

    from benchmarks import tiny

    kws = tiny.ds_cnn(keras)
    assert kws.input_shape == (None, 49, 10, 1) and kws.output_shape == (None, 12)
    assert tuple(kws.layers[1].kernel.shape) == (10, 4, 1, 64) and kws.layers[1].strides == (2, 2)
    ic = tiny.resnet8(keras)
    assert sorted({layer.filters for layer in ic.layers if hasattr(layer, "filters")}) == [16, 32, 64]
    ad = tiny.dense_autoencoder(keras)
    assert [layer.units for layer in ad.layers if hasattr(layer, "units")] == [128] * 4 + [8] + [128] * 4 + [640]
    vww = tiny.mobilenet_v1(keras)
    assert vww.input_shape == (None, 96, 96, 3) and max(getattr(layer, "filters", 0) for layer in vww.layers) == 256
    assert set(tiny.REFERENCE) == set(tiny.MLPERF_TINY) == {"kws", "ic", "vww", "ad"}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (install-system-deps.sh)")
def test_the_keyword_stand_in_speaks_each_word_with_voices_split_between_train_and_test():
    from benchmarks import tiny

    config = tiny.KwsConfig(train_voices=3, test_voices=2, takes=1, test_takes=2)
    a, b = tiny.make_kws_data(config), tiny.make_kws_data(config)
    assert np.array_equal(a["x_train"], b["x_train"])  # seeded
    assert a["x_train"].shape == (3 * 12, 49, 10, 1) and a["x_test"].shape == (2 * 2 * 12, 49, 10, 1)
    assert not set(a["voices_train"]) & set(a["voices_test"])
    # each clip names its voice: the build splits and counts by voice (`data.groups`)
    assert len(a["groups_train"]) == len(a["y_train"]) and set(a["groups_test"]) == set(a["voices_test"])
    assert list(a["class_names"][:3]) == ["silence", "unknown", "yes"] and np.bincount(a["y_train"]).tolist() == [3] * 12
    assert a["x_train"].dtype == np.float32 and a["x_train"].min() < -5  # log-mel MFCCs, not pixels


def test_the_machine_sound_stand_in_has_normal_training_windows_and_labelled_test_windows():
    from benchmarks import tiny

    a = tiny.make_ad_data(tiny.AdConfig(machines=2, train_clips=3, test_clips=4, windows=5))
    assert a["x_train"].shape == (2 * 3 * 5, 640) and a["x_test"].shape == (2 * 4 * 5, 640)
    assert set(a["y_train"]) == {0} and np.bincount(a["y_test"]).tolist() == [20, 20]
    # Each clip's windows are one group, so the build splits and counts clips, not windows.
    assert len(set(a["groups_train"])) == 2 * 3 and len(set(a["groups_test"])) == 2 * 4
    assert not set(a["groups_train"]) & set(a["groups_test"])  # distinct clips, distinct ids (--disjoint-groups)
    assert all(len(set(a["groups_test"][i:i + 5])) == 1 and len(set(a["y_test"][i:i + 5])) == 1
               for i in range(0, 40, 5))
    img = tiny.draw_scene(True, 96, np.random.default_rng(0))
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8


def test_a_keras3_conv1d_sensor_model_translates_exactly(tmp_path):
    """Accelerometer-style windows (64 steps x 3 axes) through Conv1D, 1-D pooling and Dense: the tf-keras
    model every stage trains computes what the Keras 3 file does."""
    import keras

    from edgecompress.models import keras_io

    keras.utils.set_random_seed(0)
    inp = keras.Input((64, 3))
    x = keras.layers.Conv1D(8, 5, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling1D(2)(keras.layers.SeparableConv1D(8, 3, padding="same")(x))
    x = keras.layers.AveragePooling1D(2)(keras.layers.ZeroPadding1D(1)(x))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.SpatialDropout1D(0.1)(x))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    model.save(tmp_path / "acc.keras")
    flat = keras_io.load_model(tmp_path / "acc.keras")
    xs = np.random.default_rng(0).normal(0, 1, (16, 64, 3)).astype("float32")
    np.testing.assert_allclose(flat.predict(xs, verbose=0), model.predict(xs, verbose=0), rtol=1e-5, atol=1e-6)
    assert keras_io.input_preprocessing(flat).__class__.__name__ == "Features"


def test_the_device_harness_scores_an_anomaly_file_by_roc_auc_from_the_eval_data(tmp_path):
    """bench-device --accuracy writes the task into eval.npz; the TF-free harness (what runs on the board)
    computes ROC-AUC itself, the same as this machine's interpreter."""
    from edgecompress.lite import latency
    from edgecompress.lite.evaluation import evaluate_tflite
    from edgecompress.models.backend import keras, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    model = keras.Model(inp, keras.layers.Dense(64)(keras.layers.Dense(8, activation="relu")(inp)))
    arrays = _ad_arrays(100, 100)
    model.compile("adam", "mse")
    model.fit(arrays["x_train"], arrays["x_train"], epochs=20, verbose=0)
    path = tmp_path / "ae.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.savez(tmp_path / "eval.npz", x=arrays["x_test"], y=arrays["y_test"], task=np.asarray("anomaly"))
    out = latency.run([str(path)], eval_data=str(tmp_path / "eval.npz"), runs=5, warmup=1)
    acc = out["results"][0]["accuracy"]
    host, pred = evaluate_tflite(path, arrays["x_test"], arrays["y_test"], task="anomaly")
    assert acc["task"] == "anomaly" and "predictions" not in acc and pred is None
    assert acc["metric"] == pytest.approx(host["accuracy"], abs=1e-9) and acc["metric"] > 0.6


def _reg_arrays(n_train=600, n_test=300, dims=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n_train + n_test, dims)).astype("float32")
    y = (np.tanh(x @ rng.normal(0, 1, dims) / 3) * 3 + rng.normal(0, 0.1, len(x))).astype("float32")
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:]}


def test_r2_and_value_labels_make_a_regression(tmp_path):
    from edgecompress.configs import Features
    from edgecompress.data.arrays import npz_holds_values
    from edgecompress.data.dataset import strata
    from edgecompress.data.loading import load_dataset
    from edgecompress.lite.scores import r2_score

    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y) == 1.0 and r2_score(np.full(4, 2.5), y) == 0.0
    with pytest.raises(EdgeCompressError, match="outputs have 2 values per example and its labels 1"):
        r2_score(np.zeros((4, 2)), y)
    arrays = _reg_arrays(100, 50)
    np.savez(tmp_path / "reg.npz", **arrays)
    assert npz_holds_values(tmp_path / "reg.npz") and not npz_holds_values(None)
    ds = load_dataset(tmp_path / "reg.npz", Features((16,)), task="regression")
    assert ds.y_train.dtype == np.float32 and np.array_equal(ds.y_train, arrays["y_train"]) and ds.class_names == ("value",)
    judge, report, _ = ds.held_out(seed=0)  # stratified on deciles of the target: both halves span its range
    assert len(judge.y_test) + len(report.y_test) == 50 and judge.y_test.min() < 0 < judge.y_test.max()
    assert set(strata(ds.y_train)) == set(range(10)) and ds.model_spec().task == "regression"
    with pytest.raises(EdgeCompressError, match=r"for a regression or multi-label model; its labels are values or 0/1 columns, which only an .npz \(or a folder of .npy\) holds"):
        load_dataset(tmp_path, Features((16,)), task="regression")


def _distil_prune_int8(tmp_path, name):
    """build-edge on `tmp_path/<name>.keras` and `<name>.npz` with a recipe of distillation (0.75 wide),
    pruning to 50% and int8; returns (stderr, artifacts by name, report.md)."""
    (tmp_path / "r.json").write_text(json.dumps({"name": "r", "stages": [
        {"stage": "distill", "width": 0.75, "epochs": 20}, {"stage": "prune", "final_sparsity": 0.5, "epochs": 4}],
        "quantize": ["float32", "int8"]}))
    proc = subprocess.run([sys.executable, "-m", "edgecompress", "build-edge", "--model", str(tmp_path / f"{name}.keras"),
                           "--data", str(tmp_path / f"{name}.npz"), "--recipe", str(tmp_path / "r.json"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return proc.stderr, {a["name"]: a for a in report["artifacts"]}, (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_a_regression_mlp_is_distilled_pruned_and_quantized_judged_by_r2(tmp_path):
    """A Keras 3 MLP with one linear output on float targets, compiled with mean absolute error: build-edge
    reads the task from the labels and the loss from the file, distils and fine-tunes by MAE, and every file
    is judged by R² with the interpreter."""
    import keras

    arrays = _reg_arrays()
    np.savez(tmp_path / "reg.npz", **arrays)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(64, activation="relu")(
        keras.layers.Dense(64, activation="relu")(inp))))
    model.compile("adam", "mae")
    model.fit(arrays["x_train"], arrays["y_train"], epochs=40, verbose=0)
    model.save(tmp_path / "reg.keras")
    stderr, arts, md = _distil_prune_int8(tmp_path, "reg")
    assert "Task: regression, judged by R²" in stderr and "Distilled student: R² " in stderr
    assert "Trains and distils by mean absolute error (the model's own loss)" in stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"]["value_loss"] == "mae"
    assert arts["teacher_float32"]["accuracy"] > 0.8
    assert arts["int8"]["accuracy"] > arts["teacher_float32"]["accuracy"] - 0.05
    assert "| R² | delta |" in md


def test_a_folder_of_npy_files_is_read_memory_mapped_like_an_npz(tmp_path):
    from edgecompress.configs import Features
    from edgecompress.data.arrays import is_npy_folder, npz_holds_features, npz_holds_values, read_arrays
    from edgecompress.data.loading import load_dataset

    arrays = _reg_arrays(80, 40)
    folder = tmp_path / "data"
    folder.mkdir()
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v * (10 if k.startswith("x") else 1))  # features outside 0..255
    assert is_npy_folder(folder) and not is_npy_folder(tmp_path)
    assert isinstance(read_arrays(folder)["x_train"], np.memmap)
    assert npz_holds_features(folder) and npz_holds_values(folder)
    ds = load_dataset(folder, Features((16,)), task="regression")
    assert ds.name == "data" and np.allclose(ds.x_test, arrays["x_test"] * 10) and ds.task == "regression"


def test_a_conv1d_layer_is_factorized_exactly_at_full_rank_and_clustered(tmp_path):
    """A Conv1D kernel (k, in, out) becomes Conv1D(rank, k) then Conv1D(out, 1): at full rank the same
    function; clustering takes Conv1D kernels too."""
    from edgecompress.configs import Features
    from edgecompress.data.dataset import Dataset
    from edgecompress.models.backend import keras
    from edgecompress.techniques.cluster import cluster
    from edgecompress.techniques.configs import ClusterConfig, FactorizeConfig
    from edgecompress.techniques.factorize import factorize, macs

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 3))
    x = keras.layers.Conv1D(48, 5, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv1D(48, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling1D()(x)))
    xs = np.random.default_rng(0).normal(0, 1, (8, 32, 3)).astype("float32")
    full, metrics = factorize(model, None, FactorizeConfig(ranks={"c2": 48}, layers=("c2",)))
    assert any(layer.name == "c2_lr_a" for layer in full.layers) and macs(model) > 0
    np.testing.assert_allclose(full.predict(xs, verbose=0), model.predict(xs, verbose=0), rtol=1e-4, atol=1e-5)
    low, metrics = factorize(model, None, FactorizeConfig(ranks={"c2": 8}, layers=("c2",)))
    assert metrics["params"] < metrics["params_before"] and metrics["macs"] < metrics["macs_before"]
    y = np.arange(40) % 2
    ds = Dataset("seq", np.random.default_rng(1).normal(0, 1, (40, 32, 3)).astype("float32"), y,
                 xs.repeat(5, 0), y, ("a", "b"), Features((32, 3)))
    clustered, cm = cluster(model, ds, ClusterConfig(number_of_clusters=8, epochs=0, min_params=500), verbose=0)
    assert set(cm["clustered_layers"]) == {"c1", "c2"} and cm["unique_weights"] <= 8


def test_an_image_autoencoder_takes_the_scale_it_is_given(tmp_path):
    """No top-1 can confirm a pixel scale for an anomaly model: `--scale` is taken as given, `auto` is unit."""
    import keras

    from edgecompress.models.user import open_model

    inp = keras.Input((8, 8, 1))
    keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp)).save(tmp_path / "ae.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", x_train=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8),
             y_train=np.zeros(20, np.int64), x_test=rng.integers(0, 255, (10, 8, 8), dtype=np.uint8),
             y_test=np.arange(10) % 2)
    assert open_model(tmp_path / "ae.keras", tmp_path / "img.npz").dataset.task == "anomaly"
    assert open_model(tmp_path / "ae.keras", tmp_path / "img.npz").spec.scale == "unit"
    assert open_model(tmp_path / "ae.keras", tmp_path / "img.npz", scale="symmetric").spec.scale == "symmetric"


# ---------------------------------------------------------------- multi-label

def _multilabel_arrays(n_train=600, n_test=300, labels=4, seed=0):
    """Features (16,) and one 0/1 column per label: label j is on where a seeded projection of x is positive."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (16, labels))
    x = rng.normal(0, 1, (n_train + n_test, 16)).astype("float32")
    y = (x @ w + rng.normal(0, 0.3, (len(x), labels)) > 0).astype("int64")
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:],
            "class_names": np.array([f"tag{j}" for j in range(labels)])}


def test_mean_roc_auc_averages_the_labels_that_have_both_values():
    from edgecompress.lite.scores import mean_roc_auc, roc_auc
    from edgecompress.lite.tasks import task

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 3))
    y[:, 2] = 1  # ranks nothing: left out
    out = rng.uniform(0, 1, (50, 3))
    assert mean_roc_auc(out, y) == pytest.approx((roc_auc(out[:, 0], y[:, 0]) + roc_auc(out[:, 1], y[:, 1])) / 2)
    assert mean_roc_auc(y.astype(float), y) == 1.0
    t = task("multilabel")
    assert t.multi_label and t.value_labels and not t.outputs_values and t.metric == "mean ROC-AUC"
    assert (t.predictions(np.array([[0.7, 0.2], [0.4, 0.9]])) == [[1, 0], [0, 1]]).all()
    with pytest.raises(EdgeCompressError, match="outputs have 2 units per example and its labels 3 columns"):
        mean_roc_auc(out[:, :2], y)
    with pytest.raises(EdgeCompressError, match="at least one label"):
        mean_roc_auc(out, np.ones((50, 3)))


def test_a_model_of_several_sigmoid_units_is_multilabel_and_its_labels_are_checked(tmp_path):
    from edgecompress.configs import Features
    from edgecompress.data.loading import load_dataset
    from edgecompress.models.backend import keras
    from edgecompress.models.keras_io import model_task, output_head

    inp = keras.Input((16,))
    model = keras.Model(inp, keras.layers.Dense(4, activation="sigmoid")(inp))
    assert output_head(model) == "sigmoids" and model_task(model) == "multilabel"
    arrays = _multilabel_arrays()
    np.savez(tmp_path / "ml.npz", **arrays)
    ds = load_dataset(tmp_path / "ml.npz", Features((16,)), task="multilabel")
    assert ds.y_train.shape == (600, 4) and ds.class_names == ("tag0", "tag1", "tag2", "tag3")
    np.savez(tmp_path / "bad.npz", **{**arrays, "y_train": arrays["y_train"] * 2})
    with pytest.raises(EdgeCompressError, match="one 0/1 column per label"):
        load_dataset(tmp_path / "bad.npz", Features((16,)), task="multilabel")
    model.save(tmp_path / "ml.keras")
    from edgecompress.models.user import open_model

    with pytest.raises(EdgeCompressError, match="4 sigmoid units: a label per unit.*--task multilabel"):
        open_model(tmp_path / "ml.keras", tmp_path / "ml.npz", task="classification")


@pytest.mark.slow
def test_a_multilabel_mlp_is_distilled_pruned_and_quantized_judged_by_mean_roc_auc(tmp_path):
    """A Keras 3 MLP ending in four sigmoid units: build-edge reads the task from the model, trains and distils
    by binary cross-entropy and MSE, and judges every file by the mean ROC-AUC of its units."""
    import keras

    arrays = _multilabel_arrays()
    np.savez(tmp_path / "ml.npz", **arrays)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16,))
    h = keras.layers.Dense(64, activation="relu")(keras.layers.Dense(64, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(4, activation="sigmoid")(h))
    model.compile("adam", "binary_crossentropy")
    model.fit(arrays["x_train"], arrays["y_train"], epochs=30, verbose=0)
    model.save(tmp_path / "ml.keras")
    stderr, arts, md = _distil_prune_int8(tmp_path, "ml")
    assert "Task: multilabel, judged by mean ROC-AUC" in stderr, stderr[-3000:]
    assert arts["teacher_float32"]["accuracy"] > 0.9
    assert arts["int8"]["accuracy"] > arts["teacher_float32"]["accuracy"] - 0.03
    assert 0.8 < arts["int8"]["agreement"] <= 1.0  # the units compared one by one at p > 0.5
    assert "| mean ROC-AUC | delta |" in md


def test_max_metric_drop_is_the_limit_in_the_metrics_own_units():
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import closed_loop

    opts = BuildOptions(model="m.keras", max_metric_drop=0.02)
    assert opts.max_accuracy_drop == pytest.approx(2.0)  # 0.02 of ROC-AUC = 2 points
    assert closed_loop(opts).max_accuracy_drop == pytest.approx(2.0)  # not replaced by the default 1.0
    assert BuildOptions.from_dict(opts.to_dict()).max_accuracy_drop == pytest.approx(2.0)
    with pytest.raises(EdgeCompressError, match="give one of them"):
        BuildOptions(max_metric_drop=0.02, max_accuracy_drop=1.0)
    with pytest.raises(EdgeCompressError, match="max_metric_drop"):
        BuildOptions(max_metric_drop=-1)
    proc = subprocess.run([sys.executable, "-m", "invoke", "--help", "build-edge"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert "--max-metric-drop" in proc.stdout


# ---------------------------------------------------------------- the margin for every task

def _bootstrap_se(metric, a, b, y, draws=800, seed=1):
    """The spread of the difference of `metric` between outputs `a` and `b` over examples resampled with
    replacement: what a paired standard error estimates, by brute force."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(y), len(y))
        diffs.append(metric(a[i], y[i]) - metric(b[i], y[i]))
    return float(np.std(diffs))


@pytest.mark.parametrize("name", ["classification", "anomaly", "multilabel", "regression"])
def test_each_tasks_per_example_terms_average_to_its_metric_and_give_its_paired_error(name):
    """A task splits its metric into one term per example (`Task.terms`): their mean is the metric, and the
    spread of two files' term differences is the standard error of their metric's difference (DeLong's for
    ROC-AUC), which a bootstrap over the examples agrees with."""
    from edgecompress.lite.scores import mean_roc_auc, r2_score
    from edgecompress.models.sanity import paired_standard_error

    rng = np.random.default_rng(0)
    n = 500
    x = np.zeros((n, 3))
    if name == "classification":
        y = rng.integers(0, 3, n)
        a = np.eye(3)[y] + rng.normal(0, 0.8, (n, 3))
        metric = lambda o, t: float((o.argmax(1) == t).mean())  # noqa: E731
    elif name == "anomaly":  # a score model: its one output is the anomaly score
        y = (rng.random(n) < 0.3).astype(np.int64)
        a = (y + rng.normal(0, 1, n))[:, None]
        metric = lambda o, t: roc_auc(o, t)  # noqa: E731
    elif name == "multilabel":
        y = (rng.random((n, 3)) < 0.4).astype(np.int64)
        y[:, 1] = y[:, 0]  # two labels that go together: their covariance counts
        a = y + rng.normal(0, 1, (n, 3))
        metric = mean_roc_auc
    else:
        y = rng.normal(0, 1, (n, 2))
        a = y + rng.normal(0, 0.5, (n, 2))
        metric = r2_score
    b = a + rng.normal(0, 0.4, a.shape)
    t = task(name)
    ta, tb = t.terms(x, a, y), t.terms(x, b, y)
    assert ta.shape == (n,) and ta.mean() == pytest.approx(t.score(x, a, y), abs=1e-9)
    se = paired_standard_error(ta, tb)
    assert 0 < se == pytest.approx(_bootstrap_se(metric, a, b, y), rel=0.15)
    assert paired_standard_error(ta, ta) == 0.0


def test_per_example_terms_keep_their_values_packed():
    from edgecompress.lite.evaluation import pack_terms, read_terms

    terms = np.array([0.25, -3.5, 1.0, 0.0])
    assert read_terms(pack_terms(terms), 4).tolist() == terms.tolist() and pack_terms(terms).startswith("f32:")
    right = np.array([1, 0, 0, 1, 1], bool)
    assert pack_terms(right) == "98" and read_terms("98", 5).tolist() == [1, 0, 0, 1, 1]  # 10011000: one bit each


@pytest.mark.slow
def test_a_closed_loop_on_an_anomaly_detector_holds_its_roc_auc_limit_by_delongs_paired_error(tmp_path, root):
    """The closed loop on a Keras 3 autoencoder (no --recipe): every judged file carries the paired standard
    error of its ROC-AUC drop, and the selected one is the smallest within the limit by that margin."""
    from conftest import run_invoke

    _trained_autoencoder(tmp_path)
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "ae.keras"), "--data", str(tmp_path / "ad.npz"),
                       "--budget-minutes", "1.5", "--runs", "10", "--out", str(out)], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["task"] == "anomaly" and report["constraints"]["margin_se"] == 1.0
    base = report["artifacts"][0]
    judged = [a for a in report["artifacts"][1:] if "val_accuracy" in a]
    assert judged and all(a["val_paired_se"] >= 0 for a in judged)
    assert any(a["val_paired_se"] > 0.1 for a in judged)  # a compressed file ranks some examples otherwise

    def bound(a):
        return 100 * (base["val_accuracy"] - a["val_accuracy"]) + a.get("val_paired_se", 0.0)

    sel = next(a for a in report["artifacts"] if a["name"] == report["selected"])
    assert bound(sel) <= 1.0 and sel["size_bytes"] == min(a["size_bytes"] for a in report["artifacts"]
                                                          if bound(a) <= 1.0)
    md = (out / "report.md").read_text()
    assert f"ROC-AUC {base['val_accuracy']:.4f} on the 100 judging images" in md
    assert "gzipped, paired standard error " in md and "% +/-" not in md  # no binomial error for a ROC-AUC
    again = run_invoke(["select", "--out", str(out), "--max-accuracy-drop", "1", "--margin-se", "0"], cwd=root)
    assert again.returncode == 0 and ", ROC-AUC 0." in again.stdout, again.stdout + again.stderr[-2000:]


def test_a_model_of_values_keeps_the_loss_it_was_compiled_with(tmp_path):
    """Mean absolute error where the saved model was compiled with it (by name or as a Loss, Keras 3 or
    tf-keras), else mean squared error; the loss reaches compile and the distiller, and the fingerprint."""
    import keras

    from edgecompress.models.backend import keras as k2
    from edgecompress.models.keras_io import saved_value_loss
    from edgecompress.models.losses import compile_for_task
    from edgecompress.techniques.distill import make_distiller

    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Dense(1)(inp))
    for loss, want in (("mae", "mae"), (keras.losses.MeanAbsoluteError(), "mae"), ("mean_absolute_error", "mae"),
                       ("mse", "mse"), (None, "mse")):
        if loss is not None:
            m.compile("adam", loss)
        m.save(tmp_path / "m.keras")
        assert saved_value_loss(tmp_path / "m.keras") == want, loss
    i2 = k2.Input((4,))
    m2 = k2.Model(i2, k2.layers.Dense(1)(i2))
    m2.compile("adam", "mae")
    m2.save(tmp_path / "m.h5")
    assert saved_value_loss(tmp_path / "m.h5") == "mae"
    compile_for_task(m2, task="regression", value_loss="mae")
    assert type(m2.loss).__name__ == "MeanAbsoluteError"
    d = make_distiller(m2, m2, task="regression", value_loss="mae")
    assert float(d.loss_terms.value_loss(np.zeros((1, 2)), np.array([[1.0, -3.0]]))[0]) == pytest.approx(2.0)  # |1|, |-3|
    with pytest.raises(EdgeCompressError, match="value_loss='huber'"):
        compile_for_task(m2, task="regression", value_loss="huber")
    from edgecompress.data.loading import load_dataset
    from edgecompress.configs import Features

    np.savez(tmp_path / "r.npz", **_reg_arrays(40, 20))
    ds = load_dataset(tmp_path / "r.npz", Features((16,)), task="regression")
    import dataclasses

    assert dataclasses.replace(ds, value_loss="mae").fingerprint() != ds.fingerprint()
