"""End to end: `invoke build-edge` in a subprocess, as a user runs it."""

import json

import numpy as np
import pytest

from conftest import run_invoke, write_png

pytestmark = pytest.mark.slow

FAST = ["--epochs", "1", "--runs", "200", "--quiet"]


@pytest.fixture(scope="module")
def default_build(tmp_path_factory, root):
    out = tmp_path_factory.mktemp("edge")
    proc = run_invoke(["build-edge", "--out", str(out), *FAST], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_default_build_leaves_files_and_report(default_build):
    out, proc = default_build
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["name"] == "fashion-mnist-subset" and report["dataset"]["count"] == 2000
    assert report["dataset"]["split"] == "test"
    assert report["baseline"] == "float32"
    names = [a["name"] for a in report["artifacts"]]
    assert names == ["float32", "dynamic", "float16", "int8", "int8_float_io"]
    for a in report["artifacts"]:
        assert (out / f"{a['name']}.tflite").stat().st_size == a["size_bytes"]
        assert 0 < a["gzip_bytes"] < a["size_bytes"]
        assert a["quantization"] in ("none", "dynamic", "float16", "int8")
        assert a["latency_ms"]["count"] == 200 and a["latency_ms"]["p50"] <= a["latency_ms"]["p90"]
        assert isinstance(a["recipe"], dict) and 0 <= a["accuracy"] <= 1
    by = {a["name"]: a for a in report["artifacts"]}
    # Issue #2's bar, on 1 epoch here (the 8-epoch default measures 0.256x, -0.05 points).
    assert by["int8"]["size_bytes"] <= 0.27 * by["float32"]["size_bytes"]
    assert abs(by["int8"]["accuracy"] - by["float32"]["accuracy"]) <= 0.005
    md = (out / "report.md").read_text()
    assert "| int8 | int8 |" in md and "fashion-mnist-subset" in md
    assert "int8_float_io" in proc.stdout and "Report:" in proc.stdout  # summary table printed
    spec = json.loads((out / "model_spec.json").read_text())
    assert spec["preprocessing"] == {"height": 28, "width": 28, "channels": 1, "scale": "unit"}


@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "gray"])
def test_users_own_model_and_image_folder(tmp_path, root, channels):
    from edgecompress._tf import keras

    rng = np.random.default_rng(0)
    data = tmp_path / "photos"
    for c, name in enumerate(["circle", "square", "stripe"]):
        for i in range(14):
            img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            img[..., c] += 150  # one colour channel per class: learnable in one epoch
            write_png(data / name / f"{i}.jpg" if i % 2 else data / name / f"{i}.png", img, "RGB")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, channels))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "mine.keras")
    out = tmp_path / "out"
    proc = run_invoke(["build-edge", "--model", str(tmp_path / "mine.keras"), "--data", str(data),
                       "--out", str(out), "--runs", "200", "--quiet"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["model_spec"]["preprocessing"]["channels"] == channels
    assert report["model_spec"]["class_names"] == ["circle", "square", "stripe"]
    assert (out / "int8.tflite").exists()
    assert report["calibration"]["path"].endswith("calibration_data") and report["calibration"]["count"] >= 10
    from edgecompress.runtime import make_interpreter

    assert list(make_interpreter(out / "int8.tflite").get_input_details()[0]["shape"]) == [1, 32, 32, channels]


def _keras3_model(path):
    import keras

    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(path)
    return path


def _sin_model(path):
    from edgecompress._tf import keras, tf

    inp = keras.Input((28, 28, 1))
    x = tf.math.sin(keras.layers.Conv2D(2, 3)(inp))
    keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))).save(path)
    return path


@pytest.mark.parametrize("make_args, needle", [
    (lambda t: ["--model", str(t / "missing.keras")], "missing.keras does not exist"),
    (lambda t: ["--model", str(_keras3_model(t / "k3.keras"))], "saved by Keras 3"),
    (lambda t: ["--data", str((t / "flat").mkdir() or t / "flat")], "has no class sub-folders"),
    (lambda t: ["--calibration", str((t / "cal").mkdir() or t / "cal"), "--epochs", "1"], r"holds 0 image\(s\)"),
    (lambda t: ["--model", str(_sin_model(t / "sin.keras"))], "int8_float_io"),
    (lambda t: ["--recipe", str(t / "nope.json")], "Recipe file not found"),
    (lambda t: ["--threads", "0"], "threads=0"),
], ids=["missing-model", "keras3", "no-class-folders", "empty-calibration", "op-not-int8", "missing-recipe", "threads"])
def test_bad_input_exits_2_with_a_message(tmp_path, root, make_args, needle):
    import re

    args = make_args(tmp_path)
    proc = run_invoke(["build-edge", "--out", str(tmp_path / "o"), "--runs", "20", "--quiet", *args], cwd=root)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert re.search(needle, proc.stderr), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_op_not_int8_still_writes_the_other_variants(tmp_path, root):
    proc = run_invoke(["build-edge", "--model", str(_sin_model(tmp_path / "sin.keras")), "--out", str(tmp_path / "o"),
                       "--runs", "20", "--quiet"], cwd=root)
    assert proc.returncode == 2
    assert "SIN" in proc.stderr
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [f["name"] for f in report["failed"]] == ["int8"]
    fio = next(a for a in report["artifacts"] if a["name"] == "int8_float_io")
    assert fio["float_ops"] == ["SIN"]


def test_invoke_list_shows_every_task(root):
    proc = run_invoke(["--list"], cwd=root)
    for name in ["build-edge", "train", "quantize", "evaluate", "calibration-data", "bench", "test"]:
        assert f"  {name} " in proc.stdout
