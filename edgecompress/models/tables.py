"""The tables Keras 3 <-> tf-keras translation is made by (`translate`): the layers both libraries compute alike,
the activations that mean the same function, the config keys only one library has and their defaults, and how a
Keras 3 config value becomes tf-keras's. Translation is by table, never by name alone.
"""

from __future__ import annotations

from edgecompress.errors import EdgeCompressError

# Layer classes that exist in both libraries with the same computation.
LAYERS = frozenset({
    "InputLayer", "Conv1D", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "BatchNormalization", "LayerNormalization", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Activation",
    "ZeroPadding2D", "Cropping2D", "UpSampling2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "Flatten", "Reshape",
    "Permute", "Rescaling", "Normalization", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
    "Concatenate",
    # their 1-D twins (sensor and audio time series)
    "SeparableConv1D", "ZeroPadding1D", "Cropping1D", "UpSampling1D", "MaxPooling1D", "AveragePooling1D",
    "GlobalAveragePooling1D", "GlobalMaxPooling1D", "SpatialDropout1D",
    # recurrent layers: float, float16 and dynamic-range files (int8 needs what the converter gives them)
    "LSTM", "GRU", "SimpleRNN",
})

# Activation names both libraries compute identically (Keras 3 name -> tf-keras name).
SAME_ACTIVATIONS = {"linear": "linear", "relu": "relu", "sigmoid": "sigmoid", "softmax": "softmax", "tanh": "tanh",
                    "swish": "swish", "silu": "swish", "elu": "elu", "selu": "selu", "softplus": "softplus",
                    "softsign": "softsign", "exponential": "exponential", "gelu": "gelu", "mish": "mish"}
# Activations rebuilt from built-in layers (see `_hard_sigmoid`): the name means different functions.
DECOMPOSED_ACTIVATIONS = frozenset({"hard_sigmoid", "hard_silu", "hard_swish", "relu6"})

# Keras-3-only config keys and their defaults: dropped at the default, refused otherwise.
KERAS3_ONLY_DEFAULTS = {
    "lora_rank": None, "lora_alpha": None, "quantization_config": None, "synchronized": False, "optional": False,
    "seed": None, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99, "ragged": False,
    "sparse": False, "rms_scaling": False, "input_axes": None, "output_axes": None,
    "data_format": "channels_last",  # ZeroPadding1D and the other 1-D layers tf-keras gives no such key
    "use_cudnn": "auto",  # Keras 3's recurrent layers: a kernel choice, the same function
}
# tf-keras-only config keys and their defaults, the same way back.
TF_KERAS_ONLY_DEFAULTS = {"groups": 1, "batch_input_shape": None, "input_shape": None, "autocast": True,
                          "implementation": 1}
# Config keys every layer accepts through **kwargs in tf-keras.
BASE_KEYS = {"name", "trainable", "dtype", "activity_regularizer", "input_shape", "batch_input_shape"}
# Keys a tf-keras layer takes through **kwargs, not its signature (its 1-D global poolings' `keepdims`).
KWARGS_KEYS = {"GlobalAveragePooling1D": {"keepdims"}, "GlobalMaxPooling1D": {"keepdims"},
                **{cls: {"zero_output_for_mask"} for cls in ("LSTM", "GRU", "SimpleRNN")}}


def plain(value):
    """tf-keras config values (ListWrapper, tuples inside) as plain Python."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListWrapper":
        return [plain(v) for v in value] if not isinstance(value, tuple) else tuple(plain(v) for v in value)
    return value


def same_value(a, b) -> bool:
    return a == b or (a in (None, False, (), []) and b in (None, False, (), []))


def tf_keras_value(key, value, layer):
    """A Keras 3 config value as tf-keras takes it (dtype policies, initializers...)."""
    if isinstance(value, dict) and value.get("class_name") == "DTypePolicy":
        name = value["config"]["name"]
        if name != "float32":
            raise EdgeCompressError(f"Layer {layer.name!r} computes in {name}; edgecompress translates float32 models. "
                                    "Set the policy to float32 (`keras.mixed_precision.set_dtype_policy('float32')`).")
        return "float32"
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value.get("registered_name") not in (None, value["class_name"]):
            raise EdgeCompressError(f"Layer {layer.name!r} uses a custom {key} ({value['registered_name']}); "
                                    "replace it with a built-in one.")
        config = {k: v for k, v in (value.get("config") or {}).items()
                  if not (k in KERAS3_ONLY_DEFAULTS and same_value(v, KERAS3_ONLY_DEFAULTS[k]))}
        return {"class_name": value["class_name"], "config": config}
    return value
