"""Tiny seeded versions of the models users bring, for Keras 3 and tf-keras.

Each is a `keras.applications` backbone (or a ResNet-style residual network)
with `include_top=False`, `weights=None`, nested inside a Functional transfer
model, at a small input and width so a test trains it for an epoch in seconds.
"""

import numpy as np

SIZE = 32
ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet", "convnext")


def _resnet(lib, shape):
    L = lib.layers

    def block(x, f, s, name):
        y = L.Conv2D(f, 3, strides=s, padding="same", use_bias=False, name=f"{name}_c1")(x)
        y = L.ReLU(name=f"{name}_r1")(L.BatchNormalization(name=f"{name}_bn1")(y))
        y = L.BatchNormalization(name=f"{name}_bn2")(L.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_c2")(y))
        if s != 1 or x.shape[-1] != f:
            x = L.BatchNormalization(name=f"{name}_bns")(L.Conv2D(f, 1, strides=s, use_bias=False, name=f"{name}_cs")(x))
        return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))

    i = lib.Input(shape)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(i)))
    x = block(block(x, 16, 1, "b1"), 32, 2, "b2")
    return lib.Model(i, block(x, 32, 1, "b3"), name="resnet_tiny")


def convnext(lib, shape=(SIZE, SIZE, 3), *, include_top=False, classes=10):
    """A tiny ConvNeXt from keras.applications' own builder (the public ConvNeXtTiny has 28M parameters): its
    LayerScale and StochasticDepth are keras.applications' layers, not `keras.layers`'. The layer scale starts
    at 0.5, not 1e-6, so a short training gives the residual branches weight."""
    if lib.__name__ == "keras":
        from keras.src.applications.convnext import ConvNeXt

        name = {"name": "convnext_tiny_test"}
    else:
        from tf_keras.src.applications.convnext import ConvNeXt

        name = {"model_name": "convnext_tiny_test"}
    return ConvNeXt(depths=[1, 1, 2, 1], projection_dims=[16, 24, 32, 48], drop_path_rate=0.1,
                    layer_scale_init_value=0.5, default_size=shape[0], **name, include_preprocessing=False,
                    include_top=include_top, weights=None, input_shape=shape, classes=classes,
                    classifier_activation=None)


def backbone(lib, arch, shape=(SIZE, SIZE, 3)):
    apps = lib.applications
    if arch == "mobilenet_v2":
        return apps.MobileNetV2(input_shape=shape, alpha=0.35, include_top=False, weights=None)
    if arch == "mobilenet_v3_small":
        # include_preprocessing=False: the transfer model's own Rescaling does it (a second one would double it).
        return apps.MobileNetV3Small(input_shape=shape, alpha=0.75, minimalistic=False, include_top=False,
                                     weights=None, include_preprocessing=False)
    if arch == "efficientnet_b0":
        return apps.EfficientNetB0(input_shape=shape, include_top=False, weights=None)
    if arch == "resnet":
        return _resnet(lib, shape)
    if arch == "convnext":
        return convnext(lib, shape)
    raise ValueError(arch)


def transfer_model(lib, arch, *, logits=True, rescaling=(1 / 127.5, -1.0), seed=0, num_classes=10):
    """Rescaling (raw pixels in), the nested backbone, pooling, a Dense head (logits, or softmax)."""
    lib.utils.set_random_seed(seed)
    inp = lib.Input((SIZE, SIZE, 3), name="image")
    x = lib.layers.Rescaling(rescaling[0], offset=rescaling[1], name="pre")(inp) if rescaling else inp
    b = backbone(lib, arch)
    for layer in b.layers:  # settle the moving averages within a short test training (see byo_example)
        if isinstance(layer, lib.layers.BatchNormalization):
            layer.momentum = 0.5
    x = lib.layers.GlobalAveragePooling2D(name="pool")(b(x))
    out = lib.layers.Dense(num_classes, activation=None if logits else "softmax", name="head")(x)
    return lib.Model(inp, out, name=f"{arch}_transfer")


def rgb_images(dataset, n, seed=0, size=SIZE):
    """`n` training images of a Fashion-MNIST Dataset, colourised to (n, size, size, 3) uint8, and labels."""
    from benchmarks.byo_example import colourise

    rng = np.random.default_rng(seed)
    return colourise(dataset.x_train[:n, ..., 0], size, rng), dataset.y_train[:n]


def train(model, x, y, epochs=1, lr=2e-3, logits=True):
    """Trains for `epochs` on raw pixels (the model rescales). Works for either library's model."""
    from edgecompress.models.graph import is_keras3

    if is_keras3(model):
        import keras as lib
    else:
        from edgecompress.models.backend import keras as lib
    model.compile(optimizer=lib.optimizers.Adam(lr),
                  loss=lib.losses.SparseCategoricalCrossentropy(from_logits=logits))
    model.fit(x.astype("float32"), y, epochs=epochs, batch_size=32, verbose=0)
    return model


def plain_classifier(seed=0):
    """A tiny tf-keras CNN without BatchNormalization or Dropout, whose statistics and randomness are per
    replica: one training step then gives the same weights on one replica, two, or two workers."""
    from edgecompress.models.backend import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, keras.layers.Softmax(name="probs")(x))
