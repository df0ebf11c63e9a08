"""Models of several inputs (issue 21): one packed row per example through the Keras stages, the user's inputs
in every `.tflite` file, each with its own quantization, and the data as `x_train/<input>` arrays."""

import json

import numpy as np
import pytest

from edgecompress.configs import Features, input_spec
from edgecompress.data.loading import load_dataset
from edgecompress.errors import EdgeCompressError
from edgecompress.lite import inputs

LAYOUT = (("image", (12, 12, 3)), ("meta", (5,)))


def _arrays(n, seed):
    """Seeded two-input data: the class is read from the image's red mean and from `meta[0]` together, so a
    model must use both inputs (either alone is at most 50% right on 4 classes). `meta` is in [-9, 9], pixels
    in 0..255: ranges one int8 scale cannot share."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    img = rng.integers(0, 120, (n, 12, 12, 3)).astype(np.uint8)
    img[y >= 2, :, :, 0] += 120
    meta = rng.normal(0, 1.5, (n, 5)).astype(np.float32)
    meta[:, 0] = np.where(y % 2 == 1, 1, -1) * rng.uniform(2, 9, n)
    return img, meta, y


def _npz(path, n_train=600, n_test=300):
    (i1, m1, y1), (i2, m2, y2) = _arrays(n_train, 1), _arrays(n_test, 2)
    np.savez(path, **{"x_train/image": i1, "x_train/meta": m1, "y_train": y1,
                      "x_test/image": i2, "x_test/meta": m2, "y_test": y2})
    return (i1, m1, y1), (i2, m2, y2)


def _keras3_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    a, b = keras.Input((12, 12, 3), name="image"), keras.Input((5,), name="meta")
    x = keras.layers.Rescaling(1 / 255.0)(a)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.layers.Dense(16, activation="relu")(b)
    m = keras.layers.Dense(8, activation="relu")(m)
    x = keras.layers.Concatenate()([x, m])
    return keras.Model([a, b], keras.layers.Dense(4, activation="softmax", name="classes")(x), name="two_inputs")


@pytest.fixture(scope="module")
def two_input_files(tmp_path_factory):
    """A trained Keras 3 model of two inputs and its data (seeded; Keras 3 top-1 on the test split about 95%)."""
    tmp = tmp_path_factory.mktemp("two")
    (i1, m1, y1), (i2, m2, y2) = _npz(tmp / "two.npz")
    model = _keras3_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit({"image": i1.astype("float32"), "meta": m1}, y1, epochs=30, batch_size=32, verbose=0)
    acc = float(model.evaluate({"image": i2.astype("float32"), "meta": m2}, y2, verbose=0)[1])
    model.save(tmp / "two.keras")
    return tmp, acc


def test_a_layout_packs_and_splits_rows_and_names_what_is_wrong():
    a, b = np.arange(24.0).reshape(2, 2, 2, 3), np.arange(10.0).reshape(2, 5)
    rows = inputs.pack({"a": a, "b": b}, (("a", (2, 2, 3)), ("b", (5,))))
    assert rows.shape == (2, 17) and rows.dtype == np.float32
    back = inputs.split(rows, [(2, 2, 3), (5,)])
    assert np.array_equal(back[0], a) and np.array_equal(back[1], b)
    with pytest.raises(EdgeCompressError, match=r"no examples for the model's input 'b'.*holds \['a'\]"):
        inputs.pack({"a": a}, (("a", (2, 2, 3)), ("b", (5,))))
    with pytest.raises(EdgeCompressError, match=r"input 'b' has examples of shape \(4,\); the model takes \(5,\)"):
        inputs.pack({"a": a, "b": b[:, :4]}, (("a", (2, 2, 3)), ("b", (5,))))
    with pytest.raises(EdgeCompressError, match="input 'b' has 1 examples, the input before it 2"):
        inputs.pack({"a": a, "b": b[:1]}, (("a", (2, 2, 3)), ("b", (5,))))
    with pytest.raises(EdgeCompressError, match="two inputs share a name"):
        inputs.check_layout((("a", (1,)), ("a", (2,))))
    with pytest.raises(EdgeCompressError, match="take 18"):
        inputs.split(np.zeros((1, 17)), [(2, 2, 3), (6,)])


def test_a_spec_of_several_inputs_round_trips_and_a_spec_of_one_reads_as_before():
    f = Features((437,), inputs=LAYOUT)
    assert input_spec(json.loads(json.dumps(f.to_dict()))) == f
    assert f.inputs == LAYOUT and "inputs" not in Features((5,)).to_dict()
    with pytest.raises(EdgeCompressError, match=r"pack into rows of 437 numbers. Received: shape=\(436,\)"):
        Features((436,), inputs=LAYOUT)


def _npy_folder(tmp_path):
    """The two-input data as an .npz and as a folder of .npy; (the .npz's arrays, the folder, its dataset)."""
    arrays, _ = _npz(tmp_path / "two.npz", n_train=40, n_test=20)
    ds = load_dataset(tmp_path / "two.npz", Features((437,), inputs=LAYOUT))
    folder = tmp_path / "npy"
    with np.load(tmp_path / "two.npz") as z:
        for key in z.files:
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{key}.npy", z[key])
    return arrays, folder, ds


def test_data_of_several_inputs_is_packed_from_an_npz_or_a_folder_of_npy(tmp_path):
    (i1, m1, _), folder, ds = _npy_folder(tmp_path)
    spec = Features((437,), inputs=LAYOUT)
    assert ds.x_train.shape == (40, 437) and ds.x_train.dtype == np.float32
    image, meta = inputs.split(ds.x_train, [s for _, s in LAYOUT])
    assert np.array_equal(image, i1) and np.array_equal(meta, m1)  # as they are: no pixel scaling
    assert np.array_equal(load_dataset(folder, spec).x_test, ds.x_test)
    np.savez(tmp_path / "one.npz", x_train=image, y_train=np.zeros(40, int), x_test=image, y_test=np.zeros(40, int))
    with pytest.raises(EdgeCompressError, match=r"`x_train` is one array, and the model takes 2 inputs \(image, "
                                                r"meta\).*`x_train/image`, `x_train/meta`"):
        load_dataset(tmp_path / "one.npz", spec)


def test_a_folder_of_npy_for_several_inputs_is_packed_on_disk_above_the_stream_threshold(tmp_path, monkeypatch):
    """Packed rows above `EDGECOMPRESS_STREAM_BYTES` are written once into the data cache, a chunk at a time,
    and read from there as a batch needs them, as a folder of images is decoded: the same rows as in memory."""
    from edgecompress.data import ondisk

    _, folder, ds = _npy_folder(tmp_path)
    monkeypatch.setenv(ondisk.STREAM_ENV, "1000")  # bytes: 40 rows of 437 float32 are 69,920
    monkeypatch.setenv(ondisk.CACHE_ENV, str(tmp_path / "cache"))
    spec = Features((437,), inputs=LAYOUT)
    streamed = load_dataset(folder, spec)
    assert isinstance(streamed.x_train, ondisk.DiskArray) and isinstance(streamed.x_test, ondisk.DiskArray)
    assert np.array_equal(streamed.x_train[:], ds.x_train) and np.array_equal(streamed.x_test[:], ds.x_test)
    assert len(list((tmp_path / "cache").glob("packed-*.npy"))) == 2  # one per split
    mtimes = {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("packed-*.npy")}
    assert np.array_equal(load_dataset(folder, spec).x_train[:5], ds.x_train[:5])
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "cache").glob("packed-*.npy")} == mtimes  # read again


def test_a_keras3_model_of_two_inputs_is_packed_exactly_and_its_files_take_both_inputs(tmp_path, two_input_files):
    """Translation packs the inputs into one row (the same outputs as Keras 3 on the two arrays); the layout is
    read back from a saved and reloaded stage model; each file takes the two inputs in the model's order, int8
    with its own scale each (pixels and [-9, 9] features), and scores packed rows as Keras does."""
    import keras

    from edgecompress.lite.evaluation import evaluate_tflite, predict
    from edgecompress.lite.runtime import make_interpreter
    from edgecompress.models import keras_io, packed, training, translate
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.schemes import ConversionConfig

    folder, _ = two_input_files
    k3 = keras.saving.load_model(folder / "two.keras")
    model = keras_io.load_model(folder / "two.keras")
    assert len(model.inputs) == 1 and packed.layout(model) == LAYOUT
    assert keras_io.input_preprocessing(model) == Features((437,), inputs=LAYOUT)
    ds = load_dataset(folder / "two.npz", keras_io.input_preprocessing(model))
    image, meta = inputs.split(ds.x_test, [s for _, s in LAYOUT])
    want = np.asarray(k3({"image": image, "meta": meta}))
    got = training.predict(model, ds.x_test)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    keras_io.save_model(model, tmp_path / "stage.keras")
    again = keras_io.load_model(tmp_path / "stage.keras")
    assert packed.layout(again) == LAYOUT
    assert [t.name for t in translate.unpacked(again).inputs] == ["image", "meta"]

    rows = ds.x_train[:64]
    rep = lambda: ([rows[i:i + 1]] for i in range(len(rows)))  # noqa: E731 - a representative dataset
    y_keras = want.argmax(1)
    for name, q in (("float32", "none"), ("int8", "int8")):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert(model, ConversionConfig(name, q), rep))
        interp = make_interpreter(path)
        details = interp.get_input_details()
        assert [packed.file_input_name(d["name"]) for d in details] == ["image", "meta"]
        assert [tuple(d["shape"][1:]) for d in details] == [s for _, s in LAYOUT]
        agree = (predict(interp, ds.x_test).argmax(1) == y_keras).mean()
        assert agree >= (1.0 if q == "none" else 0.95), (name, agree)
        if q == "int8":
            (s_img, _), (s_meta, _) = (d["quantization"] for d in details)
            assert s_img > 0.5 and s_meta < 0.2  # pixels and features, each at its own scale
    result, _ = evaluate_tflite(tmp_path / "int8.tflite", ds.x_test, ds.y_test)
    assert result["accuracy"] >= 0.85
    from edgecompress.lite import latency

    timed = latency.benchmark(tmp_path / "int8.tflite", runs=5, warmup=1, profile=True)  # every input set
    assert timed["input"]["inputs"] == 2 and timed["profile"]["ops"]["sum_ms"] > 0
    # What `bench-device --accuracy` runs on a board: packed rows in eval.npz, scored by the TF-free harness.
    np.savez(tmp_path / "eval.npz", x=ds.x_test, y=ds.y_test)
    on_device = latency.run([str(tmp_path / "int8.tflite")], eval_data=tmp_path / "eval.npz", runs=3, warmup=1)
    assert on_device["results"][0]["accuracy"]["top1"] == pytest.approx(result["accuracy"])
    from edgecompress.builder.preflight import check_model, format_findings

    said = format_findings(check_model(model))
    assert said.startswith("Model two_inputs: inputs image [12, 12, 3], meta [5] (one packed row of 437"), said


@pytest.mark.slow
def test_build_edge_takes_a_model_of_two_inputs_through_distillation_pruning_and_int8(tmp_path, two_input_files,
                                                                                       monkeypatch):
    """The whole build on a Keras 3 model of two inputs and its `x_train/<input>.npy` data, packed on disk (above
    the stream threshold), with a recipe that distils into a half-width student (both branches narrowed), prunes
    it and converts to int8: every file takes the two inputs, and the int8 file keeps the Keras model's top-1
    within a few points."""
    from edgecompress.data import ondisk
    from edgecompress.lite.runtime import make_interpreter
    from tests.support.student_build import build_student

    folder, keras_acc = two_input_files
    data = tmp_path / "npy"
    with np.load(folder / "two.npz") as z:
        for key in z.files:
            (data / key).parent.mkdir(parents=True, exist_ok=True)
            np.save(data / f"{key}.npy", z[key])
    monkeypatch.setenv(ondisk.STREAM_ENV, "1000")
    monkeypatch.setenv(ondisk.CACHE_ENV, str(tmp_path / "cache"))
    report = build_student(folder / "two.keras", data, tmp_path, distill_epochs=8)
    assert len(list((tmp_path / "cache").glob("packed-*.npy"))) == 2  # the training and test rows, on disk
    out = tmp_path / "out"
    arts = {a["name"]: a for a in report["artifacts"]}
    assert {"float32", "int8"} <= set(arts)
    for name in ("float32", "int8"):
        details = make_interpreter(out / f"{name}.tflite").get_input_details()
        assert len(details) == 2
    assert arts["int8"]["accuracy"] >= keras_acc - 0.05, (arts["int8"]["accuracy"], keras_acc)
    import keras

    for name in ("teacher", "final"):  # written back as the user built it: Keras 3, the two inputs
        saved = keras.saving.load_model(out / f"{name}.keras")
        assert [t.name for t in saved.inputs] == ["image", "meta"], name
    final = keras.saving.load_model(out / "final.keras")
    conv = [layer for layer in final.layers if type(layer).__name__ == "Conv2D"]
    dense = [layer for layer in final.layers if type(layer).__name__ == "Dense"]
    assert [c.filters for c in conv] == [8, 16] and dense[0].units == 8  # both branches narrowed by the student


def test_a_tf_keras_h5_model_of_two_inputs_is_packed_with_the_same_outputs(tmp_path):
    from edgecompress.models import keras_io, packed, training
    from edgecompress.models.backend import keras as tf_keras

    tf_keras.utils.set_random_seed(0)
    a, b = tf_keras.Input((12, 12, 3), name="image"), tf_keras.Input((5,), name="meta")
    x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3, activation="relu")(a))
    x = tf_keras.layers.Concatenate()([x, tf_keras.layers.Dense(4, activation="relu")(b)])
    model = tf_keras.Model([a, b], tf_keras.layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "two.h5")
    loaded = keras_io.load_model(tmp_path / "two.h5")
    assert packed.layout(loaded) == LAYOUT
    img, meta, _ = _arrays(16, 3)
    want = model.predict([img.astype("float32"), meta], verbose=0)
    got = training.predict(loaded, inputs.pack({"image": img, "meta": meta}, LAYOUT))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
