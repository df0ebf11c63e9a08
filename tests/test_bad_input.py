"""Bad input, tried on purpose, through the real task entry point.

Each case runs `invoke <task> ...` in-process (the same code as the
command line, without paying for a TensorFlow import per case) and asserts
the exit code and that the message names the file or argument and says what
to do. tests/test_pipeline.py runs a few of them as real subprocesses to
check that no traceback reaches the terminal.
"""

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_png
from edgecompress.errors import EdgeCompressError

pytestmark = pytest.mark.slow


def run_task(argv, capsys):
    """Runs `invoke ARGV` like the command line; returns (exit code, stderr)."""
    from invoke import Program

    import tasks

    code = 0
    try:
        Program(namespace=tasks.ns).run(["invoke", *argv])
    except SystemExit as e:
        code = e.code or 0
    err = capsys.readouterr().err
    return code, err


# ---------------------------------------------------------------- model files

def _k2(shape=(28, 28, 1), outputs=10, lam=False, inputs=1):
    from edgecompress.models.backend import keras

    ins = [keras.Input(shape) for _ in range(inputs)]
    x = ins[0] if inputs == 1 else keras.layers.Concatenate()(ins)
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if len(shape) == 3 else x
    return keras.Model(ins if inputs > 1 else ins[0], keras.layers.Dense(outputs, activation="softmax")(x))


def _k3(path):
    """A Keras 3 model that loads and translates, but predicts one class (zero weights): near chance."""
    import keras

    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10, kernel_initializer="zeros")]).save(path)
    return path


def _k3_custom(path):
    import keras

    class Doubler(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    i = keras.Input((28, 28, 1))
    keras.Model(i, keras.layers.Dense(10)(keras.layers.Flatten()(Doubler(name="doubler")(i)))).save(path)
    return path


def _save(model, path):
    model.save(path)
    return path


MODEL_CASES = [
    ("missing", lambda t: t / "nope.keras", "nope.keras does not exist"),
    ("random-keras", lambda t: (t / "r.keras").write_bytes(np.random.default_rng(0).bytes(500)) and t / "r.keras",
     "r.keras as a .keras model archive.*re-save it"),
    ("random-h5", lambda t: (t / "r.h5").write_bytes(b"\x89HDF junk" * 20) and t / "r.h5", "r.h5 as an HDF5"),
    ("unknown-format", lambda t: (t / "m.onnx").write_bytes(b"onnx") and t / "m.onnx", "not a .keras file, an .h5"),
    ("keras3-near-chance", lambda t: _k3(t / "k3.keras"), r"chance is 10.0%.*pixel scale"),
    ("keras3-h5-near-chance", lambda t: _k3(t / "k3.h5"), r"chance is 10.0%.*pixel scale"),
    ("keras3-custom-layer", lambda t: _k3_custom(t / "c.keras"), r"c.keras.*Doubler.*built-in"),
    ("lambda", lambda t: _save(_k2(lam=True), t / "lam.keras"), "Lambda layer.*--unsafe"),
    ("dynamic-dims", lambda t: _save(_k2(shape=(None, None, 3)), t / "dyn.keras"), r"input shape \(None, None, None, 3\)"),
    ("non-image", lambda t: _save(_k2(shape=(10,)), t / "vec.keras"), r"has examples of shape \(28, 28\) \(uint8\); the model takes features of shape \(10,\)"),
    ("two-inputs", lambda t: _save(_k2(inputs=2), t / "two.keras"), r"`x_train` is one array, and the model takes 2 inputs"),
    ("wrong-classes", lambda t: _save(_k2(outputs=3), t / "three.keras"), "has 3 outputs but the data has 10 classes"),
]


@pytest.mark.parametrize("make, needle", [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_bad_model(tmp_path, capsys, make, needle):
    path = make(tmp_path)
    code, err = run_task(["build-edge", "--model", str(path), "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and re.search(needle, err, re.S), err


# ---------------------------------------------------------------- data

def _npz(t, **arrays):
    p = t / "d.npz"
    np.savez(p, **arrays)
    return p


def _folder(t, classes, n=3):
    for c in classes:
        for i in range(n):
            write_png(t / "d" / c / f"{i}.png", np.zeros((8, 8), np.uint8))
    return t / "d"


DATA_CASES = [
    ("missing", lambda t: t / "none", "does not exist"),
    ("no-class-folders", lambda t: (t / "flat").mkdir() or (t / "flat"), "has no class sub-folders.*sub-folder named after"),
    ("one-class", lambda t: _folder(t, ["cat"]), "only one class sub-folder.*at least 2"),
    ("empty-class", lambda t: (_folder(t, ["cat"]), (t / "d" / "dog").mkdir(), t / "d")[-1], r"\['dog'\].*hold no images"),
    ("npz-nan", lambda t: _npz(t, x=np.full((6, 8, 8), np.nan), y=np.arange(6) % 2), "NaN or infinite.*Clean the data"),
    ("npz-inf", lambda t: _npz(t, x=np.full((6, 8, 8), -np.inf), y=np.arange(6) % 2), "NaN or infinite"),
    ("npz-labels-out-of-range", lambda t: _npz(t, x_train=np.zeros((4, 8, 8)), y_train=np.array([0, 1, 2, 9]),
                                                x_test=np.zeros((2, 8, 8)), y_test=np.array([0, 1]),
                                                class_names=np.array(["a", "b", "c"])), r"labels must lie in \[0, 2\]"),
    ("npz-float-labels", lambda t: _npz(t, x=np.zeros((6, 8, 8)), y=np.linspace(0, 1, 6)), "1-D array of integer class ids"),
    ("npz-garbage", lambda t: (t / "g.npz").write_bytes(b"PK\x03\x04garbage") and t / "g.npz", "as an .npz archive"),
    ("npz-wrong-keys", lambda t: _npz(t, images=np.zeros((4, 8, 8))), "expected `x_train`"),
    ("not-npz-file", lambda t: (t / "d.csv").write_text("1,2") and t / "d.csv", "not an .npz archive"),
]


@pytest.mark.parametrize("make, needle", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data(tmp_path, capsys, make, needle, root):
    path = make(tmp_path)
    code, err = run_task(["build-edge", "--data", str(path), "--calibration", str(root / "calibration_data"),
                          "--out", str(tmp_path / "o"), "--quiet"], capsys)
    assert code == 2, err
    assert re.search(needle, err, re.S), err


# ---------------------------------------------------------------- calibration images

def _cal(t, name, content):
    d = t / "cal"
    for i in range(12):
        write_png(d / "a" / f"{i:02d}.png", np.full((28, 28), i * 10, np.uint8))
    p = d / "a" / name
    p.write_bytes(content(p) if callable(content) else content)
    return d, p


def _truncated(fmt):
    def make(p):
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
        return buf.getvalue()[:100]
    return make


def _huge(p):
    from PIL import Image

    Image.new("1", (8000, 8000)).save(p)
    return p.read_bytes()


CAL_CASES = [
    ("zero-byte", "zz.png", b"", "empty \\(0 bytes\\)"),
    ("text-named-png", "zz.png", b"hello, I am text", "Cannot read image"),
    ("truncated-png", "zz.png", _truncated("PNG"), "Cannot read image"),
    ("truncated-jpeg", "zz.jpg", _truncated("JPEG"), "Cannot read image"),
    ("huge", "zz.png", _huge, "8000x8000.*over the 50 MP limit"),
]


@pytest.mark.parametrize("name, content, needle", [c[1:] for c in CAL_CASES], ids=[c[0] for c in CAL_CASES])
def test_bad_calibration_image_is_named(tmp_path, capsys, name, content, needle):
    folder, bad = _cal(tmp_path, name, content)
    code, err = run_task(["quantize", "--model", str(_save(_k2(), tmp_path / "m.keras")), "--calibration", str(folder),
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 2, err
    assert str(bad) in err and re.search(needle, err), err


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P", "RGBA", "LA", "1"])
def test_odd_but_valid_calibration_images_are_converted(tmp_path, mode):
    from PIL import Image

    from edgecompress.data.calibration import load_calibration_images
    from edgecompress.configs import Preprocessing

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 65535, (40, 30), dtype=np.uint16)) if mode == "I;16" \
        else rgb.convert(mode)
    for i in range(10):
        img.save(tmp_path / f"{i}.{'tiff' if mode == 'CMYK' else 'png'}")
    px = load_calibration_images(tmp_path, Preprocessing(28, 28, 1))
    assert px.shape == (10, 28, 28, 1)


# ---------------------------------------------------------------- recipes and flags

RECIPE_CASES = [
    ("missing", None, "Recipe file not found"),
    ("not-json", "{stages: [", "is not valid JSON"),
    ("unknown-stage", {"stages": [{"stage": "quantise"}]}, "unknown stage 'quantise'. Valid stages"),
    ("unknown-param", {"stages": [{"stage": "prune", "sparsity": 0.5}]}, r"Unknown parameter\(s\) \['sparsity'\].*Valid parameters"),
    ("sparsity-1", {"stages": [{"stage": "prune", "final_sparsity": 1.0}]}, "final_sparsity=1.0"),
    ("rank-too-big", {"stages": [{"stage": "factorize", "ranks": {"fc1": 4000}, "finetune_epochs": 0}]},
     r"ranks\['fc1'\].*at most 128"),
    ("unknown-variant", {"stages": [], "quantize": ["int3"]}, "Unknown quantization variant 'int3'"),
]


@pytest.mark.parametrize("content, needle", [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES])
def test_bad_recipe(tmp_path, capsys, content, needle, root):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content if isinstance(content, str) else json.dumps(content))
    code, err = run_task(["build-edge", "--recipe", str(p), "--epochs", "1", "--out", str(tmp_path / "o"), "--quiet"],
                         capsys)
    assert code == 2, err
    assert re.search(needle, err, re.S), err


@pytest.mark.parametrize("argv, needle", [
    (["build-edge", "--threads", "0"], "threads=0"),
    (["build-edge", "--runs", "0"], "runs=0"),
    (["build-edge", "--strategy", "tpu"], "strategy='tpu'"),
    (["bench", "--models", "{bad}"], "bad.tflite is 3 bytes long"),
    (["bench", "--models", "{empty}"], "0 bytes long"),
    (["bench", "--models", "{random}"], "not a TFLite flatbuffer"),
    (["evaluate", "--spec", "{nospec}"], "Preprocessing spec .* not found"),
    (["android-assets", "--out", "{emptydir}"], "Run `invoke build-edge` first"),
], ids=["threads", "runs", "strategy", "bench-truncated", "bench-empty", "bench-random", "evaluate-no-spec",
        "android-assets-no-build"])
def test_bad_flags_and_files(tmp_path, capsys, argv, needle):
    (tmp_path / "bad.tflite").write_bytes(b"abc")
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "random.tflite").write_bytes(np.random.default_rng(1).bytes(4000))
    (tmp_path / "emptydir").mkdir()
    names = {"bad": tmp_path / "bad.tflite", "empty": tmp_path / "empty.tflite", "random": tmp_path / "random.tflite",
             "nospec": tmp_path / "none.json", "emptydir": tmp_path / "emptydir"}
    argv = [a.format(**names) for a in argv]
    if argv[0] == "build-edge":
        argv += ["--out", str(tmp_path / "o"), "--quiet"]
    code, err = run_task(argv, capsys)
    assert code == 2, err
    assert re.search(needle, err), err


# ---------------------------------------------------------------- fuzzing

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2000),
    st.tuples(st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1", "CMYK"]), st.integers(1, 64), st.integers(1, 64),
              st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "TIFF"]), st.floats(0.0, 1.0)),
))
def test_fuzzed_calibration_images_never_crash(tmp_path_factory, data):
    """Any bytes named .png either load as (N, 28, 28, 1) uint8 or give an error naming the file."""
    import io

    from PIL import Image

    from edgecompress.data.calibration import load_calibration_images
    from edgecompress.configs import Preprocessing

    folder = tmp_path_factory.mktemp("fuzz")
    if isinstance(data, bytes):
        blob = data
    else:
        mode, w, h, fmt, keep = data
        rng = np.random.default_rng(w * 100 + h)
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode if mode != "I;16" else "L")
        if mode == "I;16":
            img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
        buf = io.BytesIO()
        try:
            img.save(buf, fmt)
        except (OSError, ValueError, KeyError):  # that format cannot hold that mode
            buf = io.BytesIO()
            img.convert("RGB").save(buf, fmt)
        blob = buf.getvalue()[: max(0, int(len(buf.getvalue()) * keep))]
    target = folder / "x.png"
    target.write_bytes(blob)
    try:
        px = load_calibration_images(folder, Preprocessing(28, 28, 1), min_count=1)
    except EdgeCompressError as e:
        assert str(target) in str(e) or "holds 0 image" in str(e)
    else:
        assert px.shape == (1, 28, 28, 1) and px.dtype == np.uint8
