import numpy as np
import pytest

from edgecompress.quantize import schemes
from edgecompress.quantize import convert
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.evaluation import evaluate_tflite
from edgecompress.lite.reader import float_ops, ops
from edgecompress.data.preprocessing import to_model_input
from edgecompress.lite.runtime import make_interpreter


@pytest.mark.slow
def test_int8_is_integer_only_and_close_to_float(tiny_tflites, tiny_model, tiny_dataset):
    interp = make_interpreter(tiny_tflites["int8"])
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert float_ops(tiny_tflites["int8"].read_bytes()) == []
    x = to_model_input(tiny_dataset.x_test, tiny_dataset.preprocessing)
    ref = tiny_model.predict(x, verbose=0).argmax(-1)
    f32, _ = evaluate_tflite(tiny_tflites["float32"], x, tiny_dataset.y_test, reference=ref)
    i8, _ = evaluate_tflite(tiny_tflites["int8"], x, tiny_dataset.y_test, reference=ref)
    assert f32["agreement"] == 1.0
    # Post-training int8 of this tiny CNN agrees with float on >= 95% of 300 images
    # (measured: 98-100%), and its top-1 is within 3 points.
    assert i8["agreement"] >= 0.95
    assert abs(i8["accuracy"] - f32["accuracy"]) <= 0.03
    # Weights dominate: int8 stores 1 byte per weight against 4.
    assert tiny_tflites["int8"].stat().st_size < 0.5 * tiny_tflites["float32"].stat().st_size


@pytest.mark.slow
def test_float_io_variant_keeps_float_tensors(tiny_tflites):
    interp = make_interpreter(tiny_tflites["int8_float_io"])
    assert interp.get_input_details()[0]["dtype"] == np.float32
    assert interp.get_output_details()[0]["dtype"] == np.float32


@pytest.mark.slow
@pytest.mark.parametrize("variant, weight_dtype", [(schemes.dynamic_range, "int8"), (schemes.float16, "float16")])
def test_weight_only_variants(tiny_model, variant, weight_dtype):
    data = convert.convert(tiny_model, variant())
    kinds = {d for op in ops(data) for d in op["inputs"]}
    assert weight_dtype in kinds


def _model_with(op):
    from edgecompress.models.backend import keras, tf

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3)(inp)
    x = {"sin": tf.math.sin, "erf": tf.math.erf}[op](x)
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)), name=f"with_{op}")


def _rep():
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield [rng.random((1, 8, 8, 1), dtype=np.float32)]


def test_op_without_int8_kernel_is_named_with_the_fallback():
    # The converter keeps SIN in float even under TFLITE_BUILTINS_INT8; we check the file.
    model = _model_with("sin")
    with pytest.raises(EdgeCompressError) as e:
        convert.convert(model, schemes.int8_full(), _rep)
    assert "SIN" in str(e.value) and "int8_float_io" in str(e.value)
    data = convert.convert(model, schemes.int8_float_io(), _rep)
    assert float_ops(data) == ["SIN"]


def test_op_that_tflite_cannot_run_at_all():
    with pytest.raises(EdgeCompressError, match="tf.Erf.*no builtin kernel"):
        convert.convert(_model_with("erf"), schemes.int8_float_io(), _rep)


@pytest.mark.slow
def test_int8_without_calibration_data(tiny_model):
    with pytest.raises(EdgeCompressError, match="needs a representative dataset"):
        convert.convert(tiny_model, schemes.int8_full(), None)


def test_write_is_atomic(tmp_path):
    p = convert.write_tflite(b"abc", tmp_path, "m")
    assert p.read_bytes() == b"abc" and [q.name for q in tmp_path.iterdir()] == ["m.tflite"]
    assert oct(p.stat().st_mode & 0o777) != "0o600"


@pytest.mark.slow
def test_float_layers_in_a_recipe_keep_those_layers_in_float(tmp_path, tiny_dataset, calibration_pixels):
    """`float_layers` reproduces selective int8 from a recipe: the spiky model recovers, measured."""
    from edgecompress.models import keras_io, training
    from edgecompress.quantize import convert
    from edgecompress.data.calibration import representative_dataset
    from edgecompress.quantize.schemes import ConversionConfig, int8_float_io
    from edgecompress.lite.evaluation import evaluate_tflite
    from edgecompress.data.preprocessing import to_model_input
    from test_gate import _spiky_model

    model = keras_io.load_model(_spiky_model(tmp_path / "spiky.keras", tiny_dataset))
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    x = to_model_input(tiny_dataset.x_test, tiny_dataset.preprocessing)
    sel = ConversionConfig("sel", "int8", io_dtype="float32", float_layers=("spiky", "head2"))
    acc = {}
    for conv in (int8_float_io(), sel):
        path = convert.write_tflite(convert.convert(model, conv, rep), tmp_path, conv.name)
        acc[conv.name] = evaluate_tflite(path, x, tiny_dataset.y_test)[0]["accuracy"]
    float_acc = training.keras_metric(model, tiny_dataset)
    assert float_acc - acc["int8_float_io"] > 0.3 and float_acc - acc["sel"] <= 0.02, (float_acc, acc)


@pytest.mark.parametrize("kwargs, needle", [
    ({"float_layers": ("nope",)}, r"\['nope'\] are not layers of model"),
])
@pytest.mark.slow
def test_float_layers_bad_names(tiny_model, calibration_pixels, tiny_dataset, kwargs, needle):
    from edgecompress.quantize import convert
    from edgecompress.data.calibration import representative_dataset
    from edgecompress.quantize.schemes import ConversionConfig

    conv = ConversionConfig("sel", "int8", io_dtype="float32", **kwargs)
    with pytest.raises(EdgeCompressError, match=needle):
        convert.convert(tiny_model, conv, representative_dataset(calibration_pixels, tiny_dataset.preprocessing))


def test_float_layers_need_int8_with_float_io():
    from edgecompress.quantize.schemes import ConversionConfig

    with pytest.raises(EdgeCompressError, match="io_dtype='float32'"):
        ConversionConfig("sel", "int8", float_layers=("fc1",))
    with pytest.raises(EdgeCompressError, match="quantization='int8'"):
        ConversionConfig("sel", "float16", io_dtype="float32", float_layers=("fc1",))
