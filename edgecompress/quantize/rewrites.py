"""Graph rewrites a scheme applies before it converts: the same function, in the form its kernels run fastest.

A scheme's row (`schemes.Scheme.rewrites`) names them; each takes a tf-keras model and returns it, or a
rebuilt copy (`models.translate.rebuild`), with the weights unchanged.

- `converter_of` gives every conversion its model's graph at batch size 1, where shapes are constants.
- `unfused_hard_swish`: `x * (relu6(x + 3) / 6)` (hard-swish, as `translate` writes Keras 3's `hard_silu`)
  becomes `(x / 6) * relu6(x + 3)`. The converter fuses the first order into one HARD_SWISH op, which
  XNNPACK runs in float32 but not in int8: a MobileNetV3's int8 graph broke into 19 XNNPACK partitions
  with the 18 HARD_SWISH ops between them, and ran 2.2x slower than its float32 twin on this host. In the
  second order it stays MUL, ADD with a fused RELU6, and MUL, which XNNPACK takes whole (one partition).
  The float schemes keep the fused op, which is faster in float32 (about 12% on the same model here).

Example:

>>> fast = REWRITES["unfused_hard_swish"](model)   # the model itself when it has no hard-swish
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.layer


def _is(layer, cls: str, **want) -> bool:
    if layer is None or type(layer).__name__ != cls:
        return False
    config = layer.get_config()
    return all(abs(float(config.get(k) or 0.0) - v) < 1e-6 for k, v in want.items())


def _own_inputs(model) -> dict:
    """{layer name: its input tensor(s) in `model`'s own graph}. A layer called again elsewhere has more than
    one inbound node (a student's layers, once its distiller has called it), and `layer.input` then refuses."""
    own = {}
    nodes = getattr(model, "_network_nodes", set())
    for layer in model.layers:
        for i in range(len(getattr(layer, "_inbound_nodes", []))):
            if f"{layer.name}_ib-{i}" in nodes:
                own[layer.name] = layer.get_input_at(i)
                break
    return own


def hard_swish_multiplies(model) -> dict:
    """{name of a Multiply that computes x * (relu6(x + 3) / 6): the ReLU6 layer's name}, read from the graph
    (either input order)."""
    found = {}
    own = _own_inputs(model)
    for layer in model.layers:
        inputs = own.get(layer.name)
        if type(layer).__name__ != "Multiply" or not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            continue
        for x, h in (inputs, inputs[::-1]):
            scale = _producer(h)
            if not _is(scale, "Rescaling", scale=1 / 6, offset=0.0):
                continue
            relu6 = _producer(own.get(scale.name))
            if not _is(relu6, "ReLU", max_value=6.0, threshold=0.0, negative_slope=0.0):
                continue
            shift = _producer(own.get(relu6.name))
            if _is(shift, "Rescaling", scale=1.0, offset=3.0) and own.get(shift.name) is x:
                found[layer.name] = relu6.name
                break
    return found


def is_hard_sigmoid(tensor) -> bool:
    """Whether `tensor` is the `relu6(x + 3) / 6` half of a hard-swish Multiply (its last Rescaling)."""
    return _is(_producer(tensor), "Rescaling", scale=1 / 6, offset=0.0)


def replace_hard_swish(model, replacement, what: str):
    """`model` rebuilt with `replacement(name, x, hard_sigmoid)` (rebuilt tensors) in place of each hard-swish
    Multiply `name`; `model` itself when it has none. `what` says in the log what took their place."""
    from edgecompress.models.translate import rebuild

    found = hard_swish_multiplies(model)
    if not found:
        return model

    def make(name):
        def call(inputs):
            x, h = inputs
            if not is_hard_sigmoid(h):
                x, h = h, x
            return replacement(name, x, h)
        return call

    logger.debug("%s: %s in place of %d hard-swish op(s)", model.name, what, len(found))
    return rebuild(model, {name: make(name) for name in found})


def unfused_hard_swish(model):
    """`model` with every `x * (relu6(x + 3) / 6)` written `(x / 6) * relu6(x + 3)` (module docstring)."""
    from edgecompress.models.backend import keras

    def unfused(name, x, hard_sigmoid):
        relu6 = _producer(hard_sigmoid).input  # relu6(x + 3), already rebuilt
        return keras.layers.Multiply(name=name)([keras.layers.Rescaling(1 / 6, name=f"{name}_x6")(x), relu6])

    return replace_hard_swish(model, unfused, "(x / 6) * relu6(x + 3), for the integer kernels")


REWRITES = {"unfused_hard_swish": unfused_hard_swish}
# Part of every conversion's cache key (`builder.measure`): bumped when a rewrite, or what the converter is
# given, changes what it writes, so a file converted before is converted again. 2: a pruned model's layers
# (several inbound nodes) rewritten. 3: every model converted at batch size 1 (`converter_of`).
VERSION = 3


def converter_of(model):
    """The TFLite converter of `model`, given its graph at batch size 1 (the only batch a `.tflite` file here
    runs): shapes are then constants, so a Reshape or Flatten is one RESHAPE, not SHAPE, STRIDED_SLICE and
    PACK computing the batch at run time, ops XNNPACK leaves out. Measured: a Keras 3 EfficientNetB0's file
    went from 17 XNNPACK partitions (one per squeeze-excite Reshape) to 1, with identical outputs. For an
    LSTM the converter then fuses UNIDIRECTIONAL_SEQUENCE_LSTM and a GRU into a loop of builtins (at no fixed
    batch it leaves TensorList ops no edge runtime has). A model of several inputs, packed into one row
    (`models.packed`), is converted with its unpacking layers cut off: the file takes the inputs, in the
    layout's order and under their names, each quantized on its own (`quantize.convert` cuts the
    representative rows the same way)."""
    from edgecompress.models import packed
    from edgecompress.models.backend import tf
    from edgecompress.models.translate import unpacked

    layout = packed.layout(model)
    model = unpacked(model)
    if isinstance(model.input_shape, list) and not layout:
        return tf.lite.TFLiteConverter.from_keras_model(model)

    @tf.autograph.experimental.do_not_convert
    def call(x):
        return model(x, training=False)

    @tf.autograph.experimental.do_not_convert
    def call_several(*xs):
        return model(list(xs), training=False)

    specs = ([tf.TensorSpec([1, *shape], tf.float32, name=name) for name, shape in layout] if layout
             else [tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)])
    # The converter saves its trackable as a SavedModel before converting. Given the Keras model, that save
    # traces every layer's call functions; given only the variables the function reads, it saves just the
    # function. The same bytes in a fifth to a third of the time (`python scripts/conversion_time.py`, AMD EPYC:
    # a MobileNetV3Small 29.6 s to 5.3 s, an EfficientNetB0 52.5 s to 16.8 s, float32 and int8 byte-identical).
    held = tf.Module()
    held.variables_read = list(model.variables)
    function = tf.function(call_several if layout else call).get_concrete_function(*specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([function], held)


def apply(model, names):
    """`model` through the rewrites `names` (a scheme row's `rewrites`), in order; a graph a rewrite cannot
    rebuild (tfmot's QAT wrappers) converts as it is, which the log says."""
    from edgecompress.errors import EdgeCompressError

    for name in names:
        try:
            model = REWRITES[name](model)
        except EdgeCompressError as e:
            logger.info("Rewrite %s not applied to %s (%s); converting the graph as it is", name, model.name,
                        str(e).splitlines()[0][:160])
    return model


def cache_token(names) -> list:
    """What a conversion's cache key holds of its rewrites: this module's VERSION and their names."""
    return [VERSION, *names]
