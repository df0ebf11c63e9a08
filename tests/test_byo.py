"""A user's own model end to end: a Keras 3 MobileNetV2 transfer model (nested backbone, leading
Rescaling that wants raw pixels) and a folder of RGB PNGs, through `invoke build-edge` with no flags
about either: the scale is found, the student is smaller, pruning reaches the backbone, and the user
gets a Keras 3 `final.keras` back.
"""

import json

import numpy as np
import pytest

from tests.conftest import run_invoke, write_png
from tests.support.architectures import rgb_images, train, transfer_model

# Eight distillation epochs: with one (and three), the 0.5-wide student stayed at chance on an AMD EPYC (12.50%, the
# build's sanity check stops there) where it learned on an Intel Xeon: the CPU's kernels round differently.
RECIPE = {"name": "short", "stages": [{"stage": "distill", "width": 0.5, "epochs": 8, "baseline": False},
                                      {"stage": "prune", "final_sparsity": 0.6, "epochs": 1}],
          "quantize": ["float32", "int8"]}


@pytest.fixture(scope="module")
def byo(tmp_path_factory, tiny_dataset):
    import keras

    t = tmp_path_factory.mktemp("byo")
    x, y = rgb_images(tiny_dataset, 1000, seed=0)
    for split, sl in (("train", slice(0, 800)), ("test", slice(800, 1000))):
        for i, (img, label) in enumerate(zip(x[sl], y[sl])):
            write_png(t / "images" / split / f"{label}_{tiny_dataset.class_names[label].split('/')[0]}" / f"{i}.png", img)
    model = train(transfer_model(keras, "mobilenet_v2", logits=False), x[:800], y[:800], epochs=3, logits=False)
    model.save(t / "m.keras")
    (t / "recipe.json").write_text(json.dumps(RECIPE))
    return t


@pytest.mark.slow
def test_keras3_mobilenet_transfer_model_through_build_edge(byo, root):
    import keras

    out = byo / "out"
    proc = run_invoke(["build-edge", "--model", str(byo / "m.keras"), "--data", str(byo / "images"), "--recipe",
                       str(byo / "recipe.json"), "--out", str(out), "--runs", "10", "--quiet"], cwd=root, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    source = report["model_source"]
    assert source["format"] == "keras3" and source["translation"]["flattened"] == ["mobilenetv2_0.35_32"]
    assert source["scale"]["scale"] == "raw" and "Rescaling" in source["scale"]["reason"]
    assert report["model_spec"]["preprocessing"]["scale"] == "raw"
    teacher, distill, prune = report["stages"]
    assert distill["metrics"]["params"] < 0.4 * teacher["metrics"]["params"]
    assert prune["metrics"]["sparsity"] > 0.4  # the backbone's convolutions were pruned, not skipped
    assert {a["name"] for a in report["artifacts"]} >= {"teacher_float32", "float32", "int8"}
    final = keras.saving.load_model(out / "final.keras")  # the user's own format back
    assert final.count_params() == distill["metrics"]["params"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert final.predict(x, verbose=0).shape == (2, 10)


@pytest.mark.slow
def test_explicit_wrong_scale_still_checked_and_auto_picks_raw(byo):
    """[-1, 1] pixels into a Rescaling(1/127.5, -1) model: the flag is obeyed, measured, and stopped."""
    from edgecompress.errors import EdgeCompressError
    from edgecompress.models.user import open_model

    auto = open_model(byo / "m.keras", byo / "images")
    assert auto.spec.scale == "raw" and auto.scale.accuracy["raw"] > auto.scale.accuracy["unit"]
    with pytest.raises(EdgeCompressError, match=r"measured: symmetric .*pixel scale"):
        open_model(byo / "m.keras", byo / "images", scale="symmetric")


@pytest.mark.slow
def test_the_other_tasks_take_the_keras3_model(byo, root):
    """check-model reports the translation; a stage task gives a Keras 3 file back; quantize reads the scale."""
    import keras

    from edgecompress.models import keras_io

    proc = run_invoke(["check-model", "--model", str(byo / "m.keras")], cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Keras 3 file" in proc.stdout and "flattened" in proc.stdout and "mobilenetv2_0.35_32" in proc.stdout
    out = byo / "pruned.keras"
    proc = run_invoke(["prune", "--model", str(byo / "m.keras"), "--data", str(byo / "images"), "--out", str(out),
                       "--epochs", "1", "--final-sparsity", "0.5"], cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert keras_io.model_format(out) == "keras3"
    pruned = keras.saving.load_model(out)
    # Every convolution and Dense kernel of 1,000+ weights, backbone included; tfmot prunes no depthwise kernel.
    kernels = [w.numpy() for w in pruned.weights if w.path.endswith("/kernel") and "depthwise" not in w.path]
    sparsity = [float((k == 0).mean()) for k in kernels if k.size >= 1000]
    assert len(sparsity) > 20 and min(sparsity) > 0.45, sparsity
    proc = run_invoke(["quantize", "--model", str(byo / "m.keras"), "--out", str(byo / "q"), "--calibration",
                       str(byo / "images" / "train"), "--variants", "int8"], cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Pixel scale for calibration: raw" in proc.stderr
    assert json.loads((byo / "q" / "model_spec.json").read_text())["preprocessing"]["scale"] == "raw"
