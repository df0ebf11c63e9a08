"""Width scaling and inheritance through real architectures' joins.

The exactness test is the one that can catch a slip anywhere: a teacher
whose dead half of every channel group is zero computes the same function as
its w0.5 student only if every group keeps the live channels on both sides of
each residual Add, squeeze-excite Multiply and depthwise convolution.
"""

import numpy as np
import pytest

from edgecompress.errors import EdgeCompressError


def _kill(layer, idx, bn=False):
    w = layer.get_weights()
    if bn:  # gamma, beta, mean, var: output (x - 0) * g / s + 0 is 0 where x is 0
        w[1][idx] = 0
        w[2][idx] = 0
    else:
        w[0][..., idx] = 0
        if len(w) > 1:
            w[1][idx] = 0
    layer.set_weights(w)


def _block_model():
    from edgecompress.models.backend import keras

    L = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((12, 12, 3))
    r1 = L.ReLU(name="r1")(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, padding="same", name="a")(inp)))
    s = L.Add(name="residual")([r1, L.Conv2D(8, 3, padding="same", name="b")(r1)])
    se = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(s)
    se = L.Conv2D(4, 1, activation="relu", name="reduce")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="expand")(se)
    m = L.Multiply(name="excite")([s, se])
    d = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(m)
    c = L.Conv2D(8, 1, activation="relu", name="c")(d)
    out = L.Dense(3, name="out")(L.GlobalAveragePooling2D(name="gap")(c))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, 8), rng.normal(size=8), rng.normal(size=8), rng.uniform(0.5, 2, 8)])
    return model


def test_dead_channels_inherit_exactly_through_residual_se_and_depthwise():
    from edgecompress.techniques.distill import inherit_weights, scale_width

    teacher = _block_model()
    dead = np.array([1, 3, 5, 6])
    for name in ("a", "b", "expand"):
        _kill(teacher.get_layer(name), dead)
    _kill(teacher.get_layer("bn"), dead, bn=True)
    w = teacher.get_layer("dw").get_weights()  # bias of channel c*2+j
    w[1][(dead[:, None] * 2 + np.arange(2)).reshape(-1)] = 0
    teacher.get_layer("dw").set_weights(w)
    _kill(teacher.get_layer("reduce"), [0, 2])
    _kill(teacher.get_layer("c"), [0, 2, 4, 7])
    student = scale_width(teacher, 0.5)
    assert student.get_layer("a").filters == student.get_layer("b").filters == student.get_layer("expand").filters == 4
    assert student.get_layer("dw").depth_multiplier == 2 and student.get_layer("reduce").filters == 2
    assert student.get_layer("out").units == 3
    inherit_weights(teacher, student)
    x = np.random.default_rng(1).normal(size=(6, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(student.predict(x, verbose=0), teacher.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(scale_width(teacher, 0.5).predict(x, verbose=0), teacher.predict(x, verbose=0), atol=1e-3)


def test_a_convolution_of_one_group_per_channel_passes_its_channels_through():
    """ConvNeXt writes its depthwise convolution as `Conv2D(C, 7, groups=C)`: the student keeps it depthwise
    (filters and groups both scaled) on the channels its producer keeps, exactly where the dead ones are dead.
    A grouped convolution of other groups keeps every channel."""
    from edgecompress.models.backend import keras
    from edgecompress.techniques.distill import inherit_weights, scale_width

    L = keras.layers
    keras.utils.set_random_seed(4)
    inp = keras.Input((10, 10, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(inp)
    g = L.Conv2D(8, 3, padding="same", groups=8, name="grouped_dw")(a)
    h = L.Conv2D(8, 3, padding="same", groups=2, name="two_groups")(L.Conv2D(8, 1, name="b")(g))
    teacher = keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling2D()(h)))
    dead = np.array([0, 2, 5, 7])
    _kill(teacher.get_layer("a"), dead)
    _kill(teacher.get_layer("grouped_dw"), dead)
    student = scale_width(teacher, 0.5)
    dw = student.get_layer("grouped_dw")
    assert dw.filters == dw.groups == 4 and student.get_layer("a").filters == 4
    assert student.get_layer("two_groups").filters == 8 and student.get_layer("b").filters == 8
    inherit_weights(teacher, student)
    x = np.random.default_rng(2).normal(size=(3, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(student.predict(x, verbose=0), teacher.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet", "convnext"])
def test_real_architectures_get_a_smaller_student_that_inherits(arch):
    import keras

    from edgecompress.techniques.distill import inherit_weights, scale_width
    from edgecompress.models.translate import to_tf_keras
    from tests.support.architectures import transfer_model

    teacher = to_tf_keras(transfer_model(keras, arch, logits=False))
    student = scale_width(teacher, 0.5)
    inherit_weights(teacher, student)
    ratio = student.count_params() / teacher.count_params()
    assert ratio < 0.4, ratio  # about a quarter: both sides of each kernel halve
    same = scale_width(teacher, 1.0)
    inherit_weights(teacher, same)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(same.predict(x, verbose=0), teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_no_space_is_scaled_below_min_channels_unless_every_space_is():
    """An autoencoder's 8-unit code stays 8 at width 0.375 while its 64-unit layers become 24, and a space
    narrower than the floor keeps its own width. A tiny model whose every scalable space is at most the floor is
    scaled as `width` asks (the floor would leave the teacher itself), unless the floor was asked for: then it
    is refused with the floor named."""
    from edgecompress.models.backend import keras
    from edgecompress.models.channels import MIN_CHANNELS
    from edgecompress.techniques.distill import scale_width

    L = keras.layers
    inp = keras.Input((32,))
    h = L.Dense(64, activation="relu", name="enc")(inp)
    code = L.Dense(8, activation="relu", name="code")(h)
    small = L.Dense(6, activation="relu", name="small")(code)
    teacher = keras.Model(inp, L.Dense(32, name="dec")(L.Dense(64, activation="relu", name="up")(small)))
    student = scale_width(teacher, 0.375)
    assert MIN_CHANNELS == 8
    assert [student.get_layer(n).units for n in ("enc", "code", "small", "up", "dec")] == [24, 8, 6, 24, 32]
    assert scale_width(teacher, 0.375, min_channels=1).get_layer("code").units == 3
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inp)
    x = L.Conv2D(6, 3, activation="relu", name="c2")(x)
    narrow = keras.Model(inp, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x)))
    scaled = scale_width(narrow, 0.5)
    assert (scaled.get_layer("c1").filters, scaled.get_layer("c2").filters) == (4, 3)
    with pytest.raises(EdgeCompressError, match=r"2 channel space\(s\) of at most 8 channels.*min_channels=8"):
        scale_width(narrow, 0.5, min_channels=8)
    with pytest.raises(EdgeCompressError, match=r"min_channels.*Received: min_channels=0"):
        scale_width(narrow, 0.5, min_channels=0)


def test_a_student_as_large_as_its_teacher_is_an_error():
    from edgecompress.models.backend import keras, tf
    from edgecompress.techniques.distill import scale_width

    inp = keras.Input((8, 8, 1))
    x = tf.math.sin(keras.layers.Conv2D(4, 3, name="c")(inp))  # an op the analysis does not know: full width
    teacher = keras.Model(inp, keras.layers.Dense(2, name="out")(keras.layers.Flatten(name="f")(x)))
    with pytest.raises(EdgeCompressError, match=r"no channels that can be scaled.*TFOpLambda"):
        scale_width(teacher, 0.5)
