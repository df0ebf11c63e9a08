"""Weight clustering as a registered stage: tfmot cluster_weights, the file read back."""

import dataclasses

import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.recipes.registry import STAGES, run_stage
from edgecompress.techniques.cluster import AUTO_SPARSITY
from edgecompress.techniques.configs import ClusterConfig


@pytest.mark.parametrize("kwargs, match", [
    ({"number_of_clusters": 1}, "number_of_clusters"),
    ({"number_of_clusters": 300}, "number_of_clusters"),
    ({"init": "kmeans"}, r"`init`, expected one of \['kmeans\+\+', 'linear', 'density', 'random'\]"),
    ({"preserve_sparsity": "yes"}, "preserve_sparsity"),
    ({"epochs": -1}, "epochs"),
])
def test_config_names_the_bad_argument(kwargs, match):
    with pytest.raises(EdgeCompressError, match=match):
        ClusterConfig(**kwargs)


def test_config_round_trips_and_is_registered():
    c = ClusterConfig(number_of_clusters=8, init="linear", qat=True)
    assert ClusterConfig.from_dict(c.to_dict()) == c
    assert STAGES["cluster"].config is ClusterConfig


@pytest.mark.slow
@pytest.mark.parametrize("init", ["kmeans++", "linear"])
def test_clustered_kernels_hold_at_most_k_values_in_the_file(tiny_model, tiny_dataset, calibration_pixels, init):
    from edgecompress.quantize import convert
    from edgecompress.data.calibration import representative_dataset
    from edgecompress.lite.reader import unique_weights
    from edgecompress.quantize.schemes import conversion

    before = [w.numpy().copy() for w in tiny_model.weights]
    model, metrics = run_stage(ClusterConfig(number_of_clusters=8, init=init, epochs=1, min_params=500),
                               tiny_model, tiny_dataset, verbose=0)
    assert all((a == w.numpy()).all() for a, w in zip(before, tiny_model.weights))  # the input model is untouched
    assert metrics["clustered_layers"] and metrics["unique_weights"] <= 8
    assert metrics["accuracy"] > 0.5
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    f32 = unique_weights(convert.convert(model, conversion("float32"), rep))
    i8 = unique_weights(convert.convert(model, conversion("int8"), rep))
    clustered = [layer for layer in f32["layers"] if layer["per_kernel"] <= 8]
    assert len(clustered) >= len(metrics["clustered_layers"])  # each clustered kernel: <= 8 values in the file
    # int8 keeps <= 8 stored values per output channel, but per-channel scales multiply them per kernel.
    assert i8["max_per_channel"] <= max(8, *(x["per_channel_max"] for x in f32["layers"]))
    assert any(x["per_kernel"] > 8 for x in i8["layers"])


@pytest.mark.slow
def test_after_pruning_pcqat_keeps_zeros_and_clusters_in_the_int8_file(tiny_model, tiny_dataset, calibration_pixels):
    from edgecompress.quantize import convert
    from edgecompress.data.calibration import representative_dataset
    from edgecompress.lite.reader import unique_weights, weight_sparsity
    from edgecompress.quantize.schemes import conversion

    small = dataclasses.replace(tiny_dataset, x_train=tiny_dataset.x_train[:600], y_train=tiny_dataset.y_train[:600])
    pruned, _ = run_stage(STAGES["prune"].config(final_sparsity=0.6, initial_sparsity=0.6, schedule="constant",
                                                 epochs=1, min_params=500), tiny_model, small, verbose=0)
    model, metrics = run_stage(ClusterConfig(number_of_clusters=8, epochs=1, qat=True, min_params=500), pruned, small,
                               verbose=0)
    assert metrics["preserve_sparsity"] is True and metrics["qat"] == "sparsity_cluster_preserve"  # "auto": 60% zeros
    assert any("quant" in layer.name for layer in model.layers)  # PCQAT wrapped it for int8
    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    data = convert.convert(model, conversion("int8"), rep)
    layers = {x["tensor"]: x for x in unique_weights(data)["layers"]}
    sparse = [x for x in weight_sparsity(data)["layers"] if x["sparsity"] > 0.5]
    assert len(sparse) >= 2, weight_sparsity(data)["layers"]  # the pruned zeros survived QAT into the file
    assert all(layers[x["tensor"]]["per_channel_max"] <= 9 for x in sparse)  # 8 clusters + the zeros, per channel


def test_a_model_with_nothing_to_cluster_is_refused(tiny_dataset):
    from edgecompress.models import keras_io

    untrained = keras_io.build_teacher(tiny_dataset.preprocessing, tiny_dataset.num_classes, width=0.25, seed=0)
    with pytest.raises(EdgeCompressError, match="no Conv2D, Conv1D or Dense layer with at least min_params"):
        run_stage(ClusterConfig(min_params=10**9, epochs=0), untrained, tiny_dataset, verbose=0)


@pytest.mark.slow
def test_a_cluster_preserving_qat_model_is_never_cached_unreadable(tiny_model, tiny_dataset, tmp_path):
    """tfmot cannot reload CQAT models from a file: the cache must not store one (the second build would crash)."""
    from edgecompress.recipes.cache import StageCache

    small = dataclasses.replace(tiny_dataset, x_train=tiny_dataset.x_train[:300], y_train=tiny_dataset.y_train[:300])
    model, _ = run_stage(ClusterConfig(number_of_clusters=4, epochs=0, qat=True, min_params=500), tiny_model, small,
                         verbose=0)
    c = StageCache(tmp_path)
    c.put_model("stage1-cluster", "k", model)
    assert not c.has_model("stage1-cluster", "k") and c.get_model("stage1-cluster", "k") is None


def test_auto_keeps_zeros_by_the_sparsity_of_the_kernels_it_clusters(tiny_dataset):
    """`preserve_sparsity: "auto"` reads the kernels it clusters: a pruned Conv2D beside a large dense layer it
    does not cluster (a DepthwiseConv2D) is under 30% sparse as a whole model, 39% in what is clustered."""
    import numpy as np

    from edgecompress.models.backend import keras
    from edgecompress.techniques.prune import keras_sparsity

    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, activation="relu", name="small")(i)
    x = L.Conv2D(32, 3, activation="relu", name="pruned")(L.Conv2D(8, 3, activation="relu", name="small2")(x))
    x = L.DepthwiseConv2D(7, depth_multiplier=4, name="large_dw")(x)  # 6,272 weights, never clustered
    model = keras.Model(i, L.Dense(10, name="head")(L.GlobalAveragePooling2D()(x)))
    layer = model.get_layer("pruned")
    kernel, bias = layer.get_weights()
    kernel.reshape(-1)[np.argsort(np.abs(kernel).reshape(-1))[:int(0.6 * kernel.size)]] = 0
    layer.set_weights([kernel, bias])
    assert keras_sparsity(model) < AUTO_SPARSITY
    clustered, metrics = run_stage(ClusterConfig(number_of_clusters=8, epochs=0), model, tiny_dataset, verbose=0)
    assert metrics["clustered_layers"] == ["pruned", "head"] and metrics["preserve_sparsity"] is True
    after = clustered.get_layer("pruned").get_weights()[0]
    assert (after == 0).sum() >= (kernel == 0).sum()  # the pruned zeros stayed zeros
