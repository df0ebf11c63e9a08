"""--scale auto: the model's own preprocessing layers, confirmed by measuring."""

import pytest

from edgecompress.errors import EdgeCompressError


def _model(*pre):
    from edgecompress.models.backend import keras

    inp = keras.Input((8, 8, 3))
    x = inp
    for layer in pre:
        x = layer(x)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))


@pytest.mark.parametrize("make, expected", [
    (lambda L: [L.Rescaling(1 / 255)], "raw"),
    (lambda L: [L.Rescaling(1 / 127.5, offset=-1)], "raw"),
    (lambda L: [L.Normalization(mean=[0.3] * 3, variance=[0.09] * 3)], "unit"),
    (lambda L: [L.Normalization(mean=[120.0] * 3, variance=[4900.0] * 3)], "raw"),
    (lambda L: [L.Rescaling(2.0, offset=-1.0)], "unit"),
    (lambda L: [L.Rescaling(1 / 255), L.Normalization(mean=[0.45] * 3, variance=[0.05] * 3)], "raw"),
    (lambda L: [], None),
], ids=["rescale-255", "rescale-symmetric", "norm-on-unit", "norm-on-raw", "unit-to-symmetric", "chain", "none"])
def test_declared_scale_reads_the_layers_parameters(make, expected):
    from edgecompress.models.backend import keras
    from edgecompress.models.pixelscale import declared_scale

    scale, why = declared_scale(_model(*make(keras.layers)))
    assert scale == expected, why


def test_a_sequential_models_leading_rescaling_is_read():
    from edgecompress.models.backend import keras
    from edgecompress.models.pixelscale import declared_scale

    L = keras.layers
    seq = keras.Sequential([keras.Input((8, 8, 3)), L.Rescaling(1 / 255), L.Conv2D(2, 3), L.Flatten(), L.Dense(10)])
    assert declared_scale(seq)[0] == "raw"
    bare = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(2, 3), L.Rescaling(1 / 255), L.Flatten(), L.Dense(10)])
    assert declared_scale(bare)[0] is None  # a Rescaling after the first convolution is not preprocessing


@pytest.mark.slow
def test_measurement_decides_without_layers(tiny_model, tiny_dataset):
    """The tiny teacher was trained on [0, 1] pixels and has no preprocessing layer.

    (A ReLU network without normalization is nearly scale-equivariant, so raw
    pixels still give it about 55% against 70% for unit: the measurement must
    compare, not threshold.)
    """
    from edgecompress.models.pixelscale import choose_scale

    choice = choose_scale(tiny_model, tiny_dataset)
    assert choice.scale == "unit" and choice.declared is None
    assert choice.accuracy["unit"] > choice.accuracy["raw"] and choice.accuracy["unit"] >= choice.accuracy["symmetric"]


def test_near_chance_stops_naming_the_causes(tiny_dataset):
    from edgecompress.models.backend import keras
    from edgecompress.models.pixelscale import choose_scale

    inp = keras.Input((28, 28, 1))
    dead = keras.Model(inp, keras.layers.Dense(10, activation="softmax", kernel_initializer="zeros")(
        keras.layers.Flatten()(inp)))
    with pytest.raises(EdgeCompressError, match=r"chance is 10.0%.*pixel scale.*class-folder order.*grayscale"):
        choose_scale(dead, tiny_dataset)
    with pytest.raises(EdgeCompressError, match="chance"):
        choose_scale(dead, tiny_dataset, requested="unit")


def test_preprocessing_inside_a_nested_backbone_is_found():
    """MobileNetV3 with include_preprocessing=True carries its Rescaling(1/127.5, -1) inside the backbone."""
    import keras

    from edgecompress.models.pixelscale import declared_scale
    from edgecompress.models.translate import to_tf_keras

    inp = keras.Input((32, 32, 3))
    b = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(b(inp))))
    scale, why = declared_scale(to_tf_keras(model))
    assert scale == "raw" and "Rescaling" in why
