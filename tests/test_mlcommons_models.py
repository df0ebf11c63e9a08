"""MLPerf Tiny's own trained models (tests/mlcommons/, files no one here wrote) load and quantize through
`build-edge` (issue 21, item 4).

Their training sets (CIFAR-10, DCASE ToyCar, the wake-word corpus, COCO persons) cannot be read here, so each
model is judged against its own answers: the test inputs are offline stand-ins of the right shape
(`benchmarks/tiny.py`), and their labels are what the Keras model itself predicts (a classifier's top-1; an
autoencoder's 30% highest reconstruction errors as "anomaly"). The float32 file then scores about 100% (AUC 1),
and each quantized file's metric says how far quantization moved the model's answers. The int8 file must also
be about the size of MLPerf Tiny's own int8 file of the same model.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent / "mlcommons"

# file: (MLPerf Tiny's reference int8 .tflite bytes, the stand-in inputs, the task)
CASES = {
    "pretrainedResnet.h5": (98_496, "ic", "classification"),
    "vww_96.h5": (333_288, "vww", "classification"),
    "str_ww_ref_model.h5": (74_520, "features", "classification"),
    "ad01.h5": (276_976, "ad", "anomaly"),
}


def _inputs(kind, shape):
    from benchmarks import tiny

    if kind == "ic":
        d = tiny.make_ic_data(train=300, test=200, seed=0)
    elif kind == "vww":
        d = tiny.make_vww_data(train=120, test=100, seed=0)
    elif kind == "ad":
        d = tiny.make_ad_data(tiny.AdConfig(machines=2, train_clips=10, test_clips=10, windows=8))
    else:  # float features of the model's own shape (the streaming wake-word model's 30 frames of 40 bins)
        rng = np.random.default_rng(0)
        d = {"x_train": rng.normal(0, 1, (300, *shape)).astype(np.float32),
             "x_test": rng.normal(0, 1, (200, *shape)).astype(np.float32)}
    return d["x_train"], d["x_test"]


def _own_labels(model, x, task):
    scaled = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
    out = model.predict(scaled, verbose=0)
    if task == "classification":
        return out.argmax(axis=-1).astype(np.int64)
    err = ((out - scaled.reshape(out.shape)) ** 2).mean(axis=-1)
    return (err >= np.quantile(err, 0.7)).astype(np.int64)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mlcommons_reference_model_loads_and_quantizes(name, tmp_path):
    from edgecompress.builder.options import BuildOptions
    from edgecompress.models.backend import keras
    from edgecompress.pipeline import build_edge

    reference_int8, kind, task = CASES[name]
    path = HERE / name
    model = keras.models.load_model(path, compile=False)
    x_train, x_test = _inputs(kind, tuple(model.input_shape[1:]))
    assert x_test.shape[1:] == tuple(model.input_shape[1:]), (x_test.shape, model.input_shape)
    arrays = {"x_train": x_train, "x_test": x_test, "y_test": _own_labels(model, x_test, task)}
    arrays["y_train"] = (np.zeros(len(x_train), np.int64) if task == "anomaly"
                         else _own_labels(model, x_train, task))
    if task == "classification":  # every class the model has, though its own answers may not use them all
        arrays["class_names"] = np.asarray([f"class_{i}" for i in range(model.output_shape[-1])])
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    out = tmp_path / "build"
    recipe = tmp_path / "float32-int8.json"  # quantize-only's two files that matter here: the suite stays short
    recipe.write_text(json.dumps({"name": "float32-int8", "stages": [], "quantize": ["float32", "int8"]}))
    build_edge(BuildOptions(model=str(path), data=str(data), out_dir=str(out), recipe=str(recipe), runs=5,
                            verbose=0))
    report = json.loads((out / "report.json").read_text())
    assert report["model_spec"]["task"] == task
    arts = {a["name"]: a for a in report["artifacts"]}
    assert {"float32", "int8"} <= set(arts), sorted(arts)
    # The model's float32 file gives the Keras model's own answers; int8 moves few of them.
    assert arts["float32"]["accuracy"] >= 0.98, arts["float32"]["accuracy"]
    assert arts["int8"]["accuracy"] >= (0.9 if task == "classification" else 0.85), arts["int8"]["accuracy"]
    # The same model in int8 is about the size of MLPerf Tiny's own int8 file. Not the same bytes: TF 2.21
    # quantizes FULLY_CONNECTED weights per output channel (TF 2.3, which wrote the reference, per tensor), and
    # a scale and a zero point per channel are 12 bytes: ad01 measured 318,152 B against 276,976, with the same
    # 265,472 B of int8 weights and 6,688 B of int32 biases, and 40,260 B of quantization parameters against 372.
    assert abs(arts["int8"]["size_bytes"] - reference_int8) <= 0.2 * reference_int8, (
        arts["int8"]["size_bytes"], reference_int8)
