"""Recurrent models (issue 21): a Keras 3 LSTM converts to the fused int8 kernel and is exact, each example
starting from a zero state; a GRU converts to float, float16 and dynamic files, and int8 is refused with the
reason and what to use instead."""

import numpy as np
import pytest

from edgecompress.configs import Features
from edgecompress.data.calibration import representative_dataset
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.evaluation import evaluate_tflite
from edgecompress.quantize.convert import convert
from edgecompress.quantize.schemes import conversion


def _sequences(n=300, steps=12, dims=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, steps, dims)).astype("float32")
    return x, (x[:, :, 0].sum(1) > 0).astype(np.int64)


def _rnn(tmp_path, layer, x, y):
    import keras

    from edgecompress.models import keras_io

    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(getattr(keras.layers, layer)(8)(inp)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, verbose=0)
    model.save(tmp_path / f"{layer}.keras")
    return model, keras_io.load_model(tmp_path / f"{layer}.keras")


@pytest.mark.slow
def test_an_lstm_converts_to_a_fused_int8_kernel_and_each_example_starts_from_zero_state(tmp_path):
    from edgecompress.lite.reader import ops

    x, y = _sequences()
    keras3, model = _rnn(tmp_path, "LSTM", x, y)
    rep = representative_dataset(x[:40], Features(x.shape[1:]))
    expected = keras3.predict(x, verbose=0).argmax(-1)
    for name in ("float32", "int8"):
        data = convert(model, conversion(name), rep)
        (tmp_path / f"{name}.tflite").write_bytes(data)
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in {op["op"] for op in ops(data)}
        result, pred = evaluate_tflite(tmp_path / f"{name}.tflite", x, y, reference=expected)
        # Without a reset the LSTM's state carries from one example into the next: float32 agreed on 54.5%.
        assert result["agreement"] >= (1.0 if name == "float32" else 0.95), name


@pytest.mark.slow
def test_a_gru_converts_to_float_and_dynamic_and_int8_is_refused_with_what_to_use(tmp_path):
    x, y = _sequences()
    keras3, model = _rnn(tmp_path, "GRU", x, y)
    data = convert(model, conversion("float16"))
    (tmp_path / "f16.tflite").write_bytes(data)
    result, _ = evaluate_tflite(tmp_path / "f16.tflite", x, y, reference=keras3.predict(x, verbose=0).argmax(-1))
    assert result["agreement"] >= 0.99
    with pytest.raises(EdgeCompressError, match=r"recurrent layer\(s\) gru .* Use the dynamic or float16 variants"):
        convert(model, conversion("int8"), representative_dataset(x[:20], Features(x.shape[1:])))
