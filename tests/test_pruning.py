import numpy as np
import pytest

from edgecompress.quantize import schemes
from edgecompress.quantize import convert
from edgecompress.data.calibration import representative_dataset
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.reader import weight_sparsity
from edgecompress.techniques.prune import PruneConfig, keras_sparsity, prune


@pytest.mark.parametrize("kwargs, needle", [
    ({"final_sparsity": 1.0}, "final_sparsity=1.0"),
    ({"final_sparsity": -0.1}, "final_sparsity=-0.1"),
    ({"final_sparsity": 0.5, "initial_sparsity": 0.6}, "initial_sparsity=0.6"),
    ({"schedule": "cubic"}, "schedule='cubic'"),
    ({"m_by_n": "4:2"}, "m_by_n='4:2'"),
    ({"m_by_n": "two"}, "m_by_n='two'"),
    ({"policy": "gpu"}, "policy='gpu'"),
    ({"epochs": 0}, "epochs=0"),
    ({"on_unsupported": "ignore"}, "on_unsupported='ignore'"),
    ({"strategy": "tpu"}, "strategy='tpu'"),
])
def test_bad_config(kwargs, needle):
    with pytest.raises(EdgeCompressError, match=needle.replace("(", r"\(")):
        PruneConfig(**kwargs)


@pytest.mark.parametrize("final", [0.0, 0.5, 0.9])
def test_boundaries_are_accepted(final):
    assert PruneConfig(final_sparsity=final, initial_sparsity=0.0).target_sparsity == final


def _big_layers_sparsity(model, min_params=1000):
    zeros = total = 0
    for layer in model.layers:
        if hasattr(layer, "kernel") and layer.count_params() >= min_params:
            k = layer.kernel.numpy()
            zeros += np.count_nonzero(k == 0)
            total += k.size
    return zeros / total


@pytest.mark.parametrize("config", [
    PruneConfig(final_sparsity=0.8, epochs=1),
    PruneConfig(final_sparsity=0.6, schedule="constant", epochs=1),
], ids=["polynomial-0.8", "constant-0.6"])
@pytest.mark.slow
def test_reaches_target_in_keras_and_in_tflite(config, tiny_model, tiny_dataset, calibration_pixels):
    before = [w.copy() for w in tiny_model.get_weights()]
    pruned, metrics = prune(tiny_model, tiny_dataset, config, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_model.get_weights())), "teacher was modified"
    assert "prune_low_magnitude" not in str([l.name for l in pruned.layers])  # stripped
    assert _big_layers_sparsity(pruned) == pytest.approx(config.final_sparsity, abs=0.01)
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    data = convert.convert(pruned, schemes.int8_full(), rep)
    in_file = weight_sparsity(data)
    # Small layers (< min_params) stay dense, so the whole file sits a little under the target.
    assert in_file["overall"] == pytest.approx(metrics["sparsity"], abs=0.02)
    assert config.final_sparsity - 0.05 <= in_file["overall"] <= config.final_sparsity + 0.01
    assert {l["op"] for l in in_file["layers"]} == {"CONV_2D", "FULLY_CONNECTED"}


@pytest.mark.slow
def test_pruning_can_learn_from_the_teacher(tiny_model, tiny_dataset):
    """`distill`: the pruning wrappers train inside the distiller (UpdatePruningStep finds them there)."""
    from edgecompress.models import keras_io

    teacher = keras_io.build_teacher(tiny_dataset.preprocessing, 10, width=0.5, seed=1)
    pruned, metrics = prune(tiny_model, tiny_dataset, PruneConfig(epochs=1, final_sparsity=0.6, initial_sparsity=0.0,
                                                                  distill=True), build_teacher=teacher, verbose=0)
    assert abs(metrics["sparsity"] - 0.6) < 0.05 and metrics["accuracy"] > 0.5
    assert [w.name for w in pruned.weights] == [w.name for w in tiny_model.weights]  # the student, stripped
    with pytest.raises(EdgeCompressError, match="no teacher"):
        prune(tiny_model, tiny_dataset, PruneConfig(epochs=1, distill=True), verbose=0)


@pytest.mark.slow
def test_two_of_four_structured(tiny_model, tiny_dataset):
    pruned, metrics = prune(tiny_model, tiny_dataset, PruneConfig(m_by_n="2:4", epochs=1), verbose=0)
    assert metrics["target_sparsity"] == 0.5
    k = pruned.get_layer("fc1").kernel.numpy()  # (inputs, units): blocks of 4 along the inputs
    blocks = k.T.reshape(k.shape[1], -1, 4)
    assert (np.count_nonzero(blocks == 0, axis=-1) >= 2).all()


@pytest.mark.slow
def test_unsupported_layer_named_then_skipped(tiny_dataset):
    from edgecompress.models.backend import keras, tf

    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(name="w", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inp)
    x = Scale(name="my_scale")(x)
    x = keras.layers.Dense(64, activation="relu", name="big")(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="out")(x))
    with pytest.raises(EdgeCompressError, match=r"cannot prune layer\(s\) \['my_scale'\]"):
        prune(model, tiny_dataset, PruneConfig(epochs=1, on_unsupported="error"), verbose=0)
    pruned, metrics = prune(model, tiny_dataset, PruneConfig(epochs=1, final_sparsity=0.5), verbose=0)
    assert metrics["skipped_layers"] == ["my_scale"]
    assert np.mean(pruned.get_layer("big").kernel.numpy() == 0) == pytest.approx(0.5, abs=0.01)
    del tf


@pytest.mark.slow
def test_xnnpack_policy_explains_what_it_needs(tiny_model, tiny_dataset):
    with pytest.raises(EdgeCompressError, match="XNNPACK pruning policy cannot be applied.*Remove `policy`"):
        prune(tiny_model, tiny_dataset, PruneConfig(policy="xnnpack", epochs=1), verbose=0)


@pytest.mark.slow
def test_pruning_preserving_qat_keeps_zeros_through_int8(tiny_model, tiny_dataset, calibration_pixels):
    model, metrics = prune(tiny_model, tiny_dataset, PruneConfig(final_sparsity=0.7, epochs=1, qat=True), verbose=0)
    assert any("quant" in l.name for l in model.layers)
    assert metrics["sparsity"] == pytest.approx(0.7, abs=0.03)
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    data = convert.convert(model, schemes.int8_full(), rep)
    assert weight_sparsity(data)["overall"] == pytest.approx(metrics["sparsity"], abs=0.02)


@pytest.mark.slow
def test_keras_sparsity_counts_kernels_only(tiny_model):
    assert keras_sparsity(tiny_model) < 0.01


@pytest.mark.slow
@pytest.mark.slow
def test_qat_reaches_a_flattened_mobilenet_and_the_result_converts(tmp_path):
    """tfmot's QAT refuses nested models and Rescaling; after flattening, with those kept in float, it runs."""
    import keras as k3

    from edgecompress.quantize import schemes
    from edgecompress.quantize import convert
    from edgecompress.recipes.cache import StageCache
    from edgecompress.configs import Preprocessing
    from edgecompress.data.loading import load_dataset
    from edgecompress.techniques.prune import PruneConfig, prune
    from edgecompress.models.translate import to_tf_keras
    from tests.support.architectures import rgb_images, transfer_model

    gray = load_dataset()
    x, y = rgb_images(gray, 300)
    ds = load_dataset(None, Preprocessing(32, 32, 3, "raw"))  # only for its container; pixels replaced below
    ds.x_train, ds.y_train, ds.x_test, ds.y_test = x[:240], y[:240], x[240:], y[240:]
    model = to_tf_keras(transfer_model(k3, "mobilenet_v3_small", logits=False))
    pruned, metrics = prune(model, ds, PruneConfig(final_sparsity=0.5, epochs=1, qat=True), verbose=0)
    assert metrics["sparsity"] > 0.3
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in pruned.layers)
    cache = StageCache(tmp_path)
    cache.put_model("qat", "k", pruned)
    again = cache.get_model("qat", "k")
    np.testing.assert_allclose(again.predict(x[:4].astype("float32"), verbose=0),
                               pruned.predict(x[:4].astype("float32"), verbose=0), rtol=1e-5, atol=1e-6)
    assert convert.convert(again, schemes.int8_float_io(), lambda: iter([[x[:1].astype("float32")]]))
