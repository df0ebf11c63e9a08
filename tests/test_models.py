import numpy as np
import pytest

from edgecompress.models import keras_io
from edgecompress.configs import ModelSpec, Preprocessing
from edgecompress.errors import EdgeCompressError


def _tiny_keras2():
    from edgecompress.models.backend import keras

    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m_savedmodel"])
def test_loads_every_tf_keras_format(tmp_path, name):
    model = _tiny_keras2()
    path = tmp_path / name
    model.save(path)
    loaded = keras_io.load_model(path)
    assert loaded.input_shape == (None, 8, 8, 1) and loaded.output_shape == (None, 3)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras3_model_loads_as_tf_keras_with_the_same_outputs(tmp_path, suffix):
    import keras  # Keras 3, installed alongside TensorFlow 2.21

    from edgecompress.models.backend import keras as tf_keras

    assert keras.__version__.startswith("3.")
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / f"k3{suffix}"
    m.save(path)
    loaded = keras_io.load_model(path)
    assert isinstance(loaded, tf_keras.Model) and keras_io.model_format(path) == "keras3"
    x = np.ones((3, 4), dtype="float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)


def test_lambda_refused_in_safe_mode(tmp_path):
    from edgecompress.models.backend import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda x: x * 2)(inp)
    path = tmp_path / "lam.h5"
    keras.Model(inp, out).save(path)
    with pytest.raises(EdgeCompressError, match="Lambda layer.*--unsafe"):
        keras_io.load_model(path)
    assert keras_io.load_model(path, safe_mode=False).output_shape == (None, 4)


@pytest.mark.parametrize("name, content, needle", [
    ("r.keras", b"\x00\x01random bytes" * 10, "corrupt or not a Keras model"),
    ("r.h5", b"\x00\x01random bytes" * 10, "Cannot read .* as an HDF5"),
    ("r.onnx", b"xx", "not a .keras file, an .h5 file or a SavedModel"),
])
def test_corrupt_files(tmp_path, name, content, needle):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(EdgeCompressError, match=needle):
        keras_io.load_model(p)


def test_missing_model_path(tmp_path):
    with pytest.raises(EdgeCompressError, match="does not exist"):
        keras_io.load_model(tmp_path / "nope.keras")


def test_plain_savedmodel_without_keras_metadata(tmp_path):
    from edgecompress.models.backend import tf

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
        def __call__(self, x):
            return x

    tf.saved_model.save(M(), str(tmp_path / "sm"))
    with pytest.raises(EdgeCompressError, match="no Keras metadata"):
        keras_io.load_model(tmp_path / "sm")


@pytest.mark.parametrize("shape, ok", [((28, 28, 1), True), ((64, 48, 3), True),
                                       ((None, None, 3), "an image model of no fixed size"),
                                       ((10,), "features"),
                                       ((28, 28, 2), "features"), ((30, 1, 40), "features")])
def test_input_preprocessing_from_model(shape, ok):
    from edgecompress.models.backend import keras

    inp = keras.Input(shape)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp) if len(shape) == 3 else inp))
    if ok is True:
        assert keras_io.input_preprocessing(model).input_shape == shape
    elif ok == "features":  # not an image: fed as they are
        from edgecompress.configs import Features

        assert keras_io.input_preprocessing(model) == Features(shape)
    else:
        with pytest.raises(EdgeCompressError, match=ok):
            keras_io.input_preprocessing(model)


def test_save_is_atomic_and_keeps_spec(tmp_path):
    model = _tiny_keras2()
    spec = ModelSpec(Preprocessing(8, 8, 1), ("a", "b", "c"))
    path = keras_io.save_model(model, tmp_path / "m.keras", spec)
    assert keras_io.load_spec(path) == spec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.spec.json"]


def test_teacher_is_seeded(tiny_dataset):
    import numpy as np

    a = keras_io.build_teacher(tiny_dataset.preprocessing, 10, width=0.25, seed=3)
    b = keras_io.build_teacher(tiny_dataset.preprocessing, 10, width=0.25, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert a.get_layer("probs").__class__.__name__ == "Softmax"
