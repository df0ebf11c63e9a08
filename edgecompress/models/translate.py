"""Keras 3 <-> tf-keras, exactly, and nested sub-models flattened.

tensorflow-model-optimization works only on tf-keras (Keras 2) models, while
every TensorFlow >= 2.16 user builds with Keras 3. This module rebuilds a
model's graph layer by layer in the other library and copies the weights:

- `to_tf_keras(model)`: a Keras 3 *or* tf-keras model in, a flat tf-keras
  Functional model out. Nested Functional/Sequential sub-models called once
  (a `keras.applications` backbone inside a transfer model) are inlined, so
  pruning, QAT, factorization and width scaling reach every layer. A tf-keras
  model without nested models is returned unchanged.
- `to_keras3(model)`: a (flat) tf-keras model back to Keras 3, so a Keras 3
  user gets a Keras 3 `final.keras`.

Translation is by table, never by name alone: an activation is mapped only
where both libraries compute the same function. Keras 3's `hard_sigmoid` is
`relu6(x + 3) / 6` while tf-keras's is `0.2 x + 0.5`, so `hard_sigmoid` and
`hard_silu` become built-in layers (`Rescaling`, `ReLU(max_value=1)`,
`Multiply`) that compute Keras 3's function in both libraries; so do Keras 3
op nodes such as `x + 3` and `x * (1 / 6)` (MobileNetV3). Keras-3-only config
keys are dropped only at their default value; anything else is refused,
naming the layer, as is any layer or op not in the tables.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging

from edgecompress.errors import EdgeCompressError
from edgecompress.models import packed
from edgecompress.models.tables import (BASE_KEYS, DECOMPOSED_ACTIVATIONS, KERAS3_ONLY_DEFAULTS, KWARGS_KEYS, LAYERS, SAME_ACTIVATIONS, TF_KERAS_ONLY_DEFAULTS, plain, same_value, tf_keras_value)
from edgecompress.models.graph import (check_single_io, has_nested, input_names, is_keras3, is_keras3_module, is_model,
                                       map_args, nodes, output_names)

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class TranslationLog:
    """What a translation did: inlined sub-models, rebuilt activations and ops."""

    source: str = "tf_keras"
    flattened: list = dataclasses.field(default_factory=list)
    decomposed: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return dataclasses.asdict(self)


# --- walking a graph, either library -------------------------------------------------------------


class _Builder:
    """Rebuilds a source graph in a target library (`target`: the tf_keras or keras module)."""

    def __init__(self, target, *, source_keras3: bool, log: TranslationLog, replace=None):
        self.k = target
        self.replace = replace or {}
        self.source_keras3 = source_keras3
        self.to_keras3 = is_keras3_module(target)
        self.log = log
        self.used_names: set[str] = set()
        self.layer_map: dict[int, object] = {}  # id(source layer) -> target layer (shared layers stay shared)

    def name(self, wanted: str) -> str:
        name, i = wanted, 1
        while name in self.used_names:
            name, i = f"{wanted}_{i}", i + 1
        self.used_names.add(name)
        return name

    def run(self, model, inputs, where: str, *, whole: bool = False):
        """Translates `model`'s graph applied to target tensors `inputs`; returns its target outputs. Only a
        `whole` model (not a nested sub-model) may have several inputs (packed) and outputs."""
        check_single_io(model, where, several_inputs=whole and len(inputs) == len(model.inputs), several_outputs=whole)
        tensors = {id(t): x for t, x in zip(model.inputs, inputs)}
        calls: dict[int, int] = {}
        for op, *_ in nodes(model, self.source_keras3):
            calls[id(op)] = calls.get(id(op), 0) + 1
        for op, args, kwargs, outs in nodes(model, self.source_keras3):
            args, kwargs = map_args(args, tensors), map_args(kwargs, tensors)
            if is_model(op):
                if calls[id(op)] > 1:
                    raise EdgeCompressError(
                        f"Sub-model {op.name!r} of {where} is called {calls[id(op)]} times (shared weights). "
                        "edgecompress flattens nested models and cannot prune or scale one that is shared; "
                        "build the model without reusing the sub-model.")
                self.log.flattened.append(op.name)
                x = args[0] if args else next(iter(kwargs.values()))
                results = self.run(op, [x], f"sub-model {op.name!r}")
            else:
                results = self.call(op, args, kwargs)
            results = results if isinstance(results, (list, tuple)) else [results]
            if len(results) != len(outs):
                raise EdgeCompressError(f"Layer {op.name!r} returns {len(outs)} tensors; edgecompress follows "
                                        "layers with one output. Rebuild it with built-in layers.")
            for t, r in zip(outs, results):
                tensors[id(t)] = r
        return [map_args(t, tensors) for t in model.outputs]

    # --- one layer or op ---

    def call(self, op, args, kwargs):
        cls = type(op).__name__
        module = type(op).__module__
        if op.name in self.replace:
            self.used_names.add(op.name)
            return self.replace[op.name](args[0] if args else next(iter(kwargs.values())))
        if self.source_keras3 and ".ops." in module and not module.startswith("keras.src.layers"):
            return self.op_node(op, cls, args, kwargs)
        if cls == "TFOpLambda" and self.to_keras3:
            raise EdgeCompressError(f"Layer {op.name!r} is a TensorFlow op (tf-keras TFOpLambda), which Keras 3 "
                                    "cannot hold. Use a built-in layer instead.")
        if cls == "TFOpLambda" and not self.to_keras3:
            new = type(op).from_config(op.get_config())
            return new(*args, **kwargs)
        if cls in REBUILT and ".applications." in module:
            if id(op) in self.layer_map:
                return self.layer_map[id(op)](*args, **kwargs)
            x = args[0] if args else next(iter(kwargs.values()))
            self.log.decomposed.append(f"{op.name}: {cls}")
            self.layer_map[id(op)] = REBUILT[cls](self, op, x)
            return self.layer_map[id(op)](x)
        if cls not in LAYERS:
            kind = "Lambda layers run arbitrary Python code" if cls == "Lambda" else (
                "custom or subclassed layers cannot be rebuilt from their config")
            raise EdgeCompressError(
                f"Layer {op.name!r} is a {cls}, which edgecompress cannot translate ({kind}). Replace it with "
                f"built-in layers (supported: {', '.join(sorted(LAYERS - {'InputLayer'}))}).")
        if id(op) in self.layer_map:  # a layer called twice: the same weights
            return self.layer_map[id(op)](*args, **kwargs)
        config = self.config(op, cls)
        activation = config.get("activation")
        post = None
        if cls == "Activation" and activation in DECOMPOSED_ACTIVATIONS:
            self.log.decomposed.append(f"{op.name}: {activation}")
            return self.decompose(activation, args[0], op.name)
        if activation in DECOMPOSED_ACTIVATIONS:
            post, config["activation"] = activation, "linear"
        config["name"] = self.name(op.name if post is None else f"{op.name}_linear")
        target_cls = getattr(self.k.layers, cls)
        try:
            new = target_cls.from_config(config)
        except Exception as e:  # noqa: BLE001 - any refusal is this layer's config
            raise EdgeCompressError(f"Cannot rebuild layer {op.name!r} ({cls}) from its config: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        out = new(*args, **kwargs)
        self.copy_weights(op, new)
        self.layer_map[id(op)] = new
        if post is not None:
            self.log.decomposed.append(f"{op.name}: activation {post}")
            out = self.decompose(post, out, op.name)
        return out

    def copy_weights(self, src, dst):
        weights = src.get_weights()
        if not weights:
            return
        shapes = [tuple(w.shape) for w in dst.get_weights()]
        if [tuple(w.shape) for w in weights] != shapes:
            raise EdgeCompressError(f"Layer {src.name!r}: weight shapes {[w.shape for w in weights]} do not match "
                                    f"the rebuilt layer's {shapes}.")
        dst.set_weights(weights)

    def config(self, layer, cls):
        config = dict(layer.get_config())
        if not self.source_keras3 and not self.to_keras3:
            return config  # flattening a tf-keras model: the same library, the same config
        target_cls = getattr(self.k.layers, cls)
        accepted = set(inspect.signature(target_cls.__init__).parameters) | BASE_KEYS | KWARGS_KEYS.get(cls, set())
        defaults = TF_KERAS_ONLY_DEFAULTS if self.to_keras3 else KERAS3_ONLY_DEFAULTS
        out = {}
        for key, value in config.items():
            if key in accepted and not (self.to_keras3 and key in ("batch_input_shape", "input_shape")):
                out[key] = plain(value) if self.to_keras3 else tf_keras_value(key, value, layer)
            elif key in defaults and same_value(value, defaults[key]):
                continue
            else:
                target = "Keras 3" if self.to_keras3 else "tf-keras (needed for pruning and the other training stages)"
                raise EdgeCompressError(
                    f"Layer {layer.name!r} ({cls}) sets {key}={value!r}, which {target} cannot hold. Remove that "
                    "option from the layer, or save the model without it.")
        if self.to_keras3:
            if isinstance(out.get("axis"), list) and len(out["axis"]) == 1 and cls != "Normalization":
                out["axis"] = out["axis"][0]  # tf-keras BatchNormalization keeps a one-element list
            return out
        if out.get("activation") is not None:
            act = out["activation"]
            if act not in SAME_ACTIVATIONS and act not in DECOMPOSED_ACTIVATIONS:
                raise EdgeCompressError(
                    f"Layer {layer.name!r} uses activation {act!r}, which edgecompress cannot translate exactly "
                    f"to tf-keras. Supported: {', '.join(sorted(set(SAME_ACTIVATIONS) | DECOMPOSED_ACTIVATIONS))}.")
            out["activation"] = SAME_ACTIVATIONS.get(act, act)
        return out

    def decompose(self, activation, x, name):
        """Keras 3's hard activations from built-in layers: exact in both libraries."""
        L = self.k.layers
        if activation == "relu6":
            return L.ReLU(max_value=6.0, name=self.name(name))(x)
        # hard_sigmoid(x) = relu6(x + 3) / 6, Keras 3's own definition, in the order the TFLite converter
        # recognizes: `x * relu6(x + 3) / 6` becomes one HARD_SWISH op, which XNNPACK runs in float32 (the
        # int8 schemes convert a graph without it: `quantize.rewrites`). (Written as min(max(x / 6 + 0.5, 0), 1)
        # it became RELU and MINIMUM, which XNNPACK leaves out of an int8 graph.)
        last = activation == "hard_sigmoid"
        h = L.Rescaling(1.0, offset=3.0, name=self.name(f"{name}_hs_shift"))(x)
        h = L.ReLU(max_value=6.0, name=self.name(f"{name}_hs_relu6"))(h)
        h = L.Rescaling(1.0 / 6.0, name=self.name(name if last else f"{name}_hs_scale"))(h)
        if last:
            return h
        return L.Multiply(name=self.name(name))([x, h])  # hard_silu(x) = x * hard_sigmoid(x)

    def op_node(self, op, cls, args, kwargs):
        """A Keras 3 op applied in a functional graph (`x + 3`, `x * (1 / 6)`, `ops.hard_silu(x)`)."""
        L = self.k.layers
        tensors = [a for a in args if not isinstance(a, (int, float))]
        scalars = [float(a) for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        name = self.name(op.name)
        self.log.decomposed.append(f"{op.name}: ops.{cls}")
        if kwargs:
            raise EdgeCompressError(f"Op {op.name!r} ({cls}) is called with keyword arguments {sorted(kwargs)}, "
                                    "which edgecompress does not translate. Use a built-in layer instead.")
        if len(tensors) == 2 and not scalars and cls in ("Add", "Subtract", "Multiply", "Maximum", "Minimum"):
            return getattr(L, cls)(name=name)(tensors)
        if len(tensors) == 1 and len(scalars) == 1:
            c, first_is_tensor = scalars[0], not isinstance(args[0], (int, float))
            affine = {"Add": (1.0, c), "Multiply": (c, 0.0),
                      "Subtract": (1.0, -c) if first_is_tensor else (-1.0, c),
                      "Divide": (1.0 / c, 0.0) if first_is_tensor and c else None,
                      "TrueDivide": (1.0 / c, 0.0) if first_is_tensor and c else None}.get(cls)
            if affine is not None:
                return L.Rescaling(affine[0], offset=affine[1], name=name)(tensors[0])
        if len(tensors) == 1 and not scalars:
            act = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid",
                   "HardSilu": "hard_silu", "Silu": "swish", "Softmax": "softmax", "Tanh": "tanh"}.get(cls)
            if act in DECOMPOSED_ACTIVATIONS:
                self.used_names.discard(name)
                return self.decompose(act, tensors[0], op.name)
            if act is not None:
                return L.Activation(act, name=name)(tensors[0])
        raise EdgeCompressError(
            f"Op {op.name!r} ({type(op).__module__}.{cls}) is not translated by edgecompress. Supported ops: a "
            "tensor plus, minus, times or divided by a constant, two tensors added or multiplied, and "
            "relu/relu6/sigmoid/hard_sigmoid/hard_silu/silu/softmax/tanh. Use a built-in layer instead.")


def _layer_scale(builder, op, x):
    """ConvNeXt's `LayerScale` (`x * gamma`, one learned scale per channel) as a 1x1 `DepthwiseConv2D` without
    bias whose kernel is gamma: the same product, a layer width scaling follows, trainable as gamma is."""
    if len(x.shape) != 4:
        raise EdgeCompressError(f"Layer {op.name!r} is a LayerScale on a tensor of rank {len(x.shape)}; edgecompress "
                                "rebuilds it (a per-channel scale) for images, rank 4. Replace it with built-in layers.")
    gamma = op.get_weights()[0]
    new = builder.k.layers.DepthwiseConv2D(1, use_bias=False, name=builder.name(op.name))
    new.build(tuple(x.shape))
    new.set_weights([gamma.reshape(1, 1, -1, 1)])
    return new


def _stochastic_depth(builder, op, x):
    """ConvNeXt's `StochasticDepth`: while training, each example's residual branch is dropped with probability
    `drop_path_rate` and kept ones are divided by the keep probability; the identity at inference. That is
    `Dropout(rate, noise_shape=(None, 1, ..., 1))`, one draw per example."""
    rate = float(op.get_config()["drop_path_rate"])
    return builder.k.layers.Dropout(rate, noise_shape=(None,) + (1,) * (len(x.shape) - 1),
                                    name=builder.name(op.name))


# keras.applications' own helper layers (not in `keras.layers`), each rebuilt from built-in ones with the
# same function: class name -> (builder, layer, input tensor) -> the new layer.
REBUILT = {"LayerScale": _layer_scale, "StochasticDepth": _stochastic_depth}


def applications_layers(keras_lib) -> dict:
    """The classes of `REBUILT`, by name, from `keras_lib`'s (tf-keras') applications: what loading a tf-keras
    file that holds them needs (it names a layer by class alone), so a saved ConvNeXt loads."""
    from importlib import import_module

    convnext = import_module(f"{keras_lib.__name__}.src.applications.convnext")
    return {name: getattr(convnext, name) for name in REBUILT if hasattr(convnext, name)}


def rebuilt_summary(decomposed) -> str:
    """What the log and `check-model` say of a translation's rebuilt pieces (`TranslationLog.decomposed`)."""
    if not decomposed:
        return ""
    return f"; rebuilt from built-in layers: {len(decomposed)} activation(s), op(s) or keras.applications layer(s)"


# --- public API ----------------------------------------------------------------------------------


def to_tf_keras(model, log: TranslationLog | None = None):
    """A flat tf-keras Functional model computing what `model` (Keras 3 or tf-keras) computes.

    Returns `model` itself when it is already a tf-keras model without nested
    sub-models.

    Raises:
        EdgeCompressError: naming the layer, for anything it cannot translate
            exactly (custom layers, Lambda, unknown ops or config keys, a
            shared sub-model, two inputs or outputs).
    """
    from edgecompress.models.backend import keras as tf_keras

    keras3 = is_keras3(model)
    log = log if log is not None else TranslationLog()
    log.source = "keras3" if keras3 else "tf_keras"
    check_single_io(model, f"Model {model.name!r}", several_inputs=True, several_outputs=True)
    several = len(model.inputs) > 1
    if not keras3 and not has_nested(model) and not several and len(model.outputs) == 1:
        return model
    builder = _Builder(tf_keras, source_keras3=keras3, log=log)
    if several:  # one packed row in, cut into the model's inputs by its first layers (`models.packed`)
        layout = tuple((n, tuple(int(d) for d in t.shape[1:])) for n, t in zip(input_names(model), model.inputs))
        if any(d is None for _, shape in layout for d in shape):
            raise EdgeCompressError(f"Model {model.name!r} has an input of no fixed shape ({layout}); a .tflite "
                                    "file needs fixed shapes: give every dimension in `Input(shape=...)`.")
        inp = tf_keras.Input((packed.row_width(layout),), name=builder.name(packed.PACKED_INPUT))
        parts = packed.unpack(tf_keras, inp, layout, builder.name)
        logger.info("Model %r has %d inputs (%s): built on one packed row of %d numbers, cut into them by its "
                    "first layers; its .tflite files take the %d inputs", model.name, len(layout),
                    ", ".join(f"{n} {s}" for n, s in layout), inp.shape[-1], len(layout))
    else:
        inp = tf_keras.Input(tuple(model.inputs[0].shape)[1:], name=builder.name(_input_name(model)))
        parts = [inp]
    outs = builder.run(model, parts, f"Model {model.name!r}", whole=True)
    if len(outs) > 1:  # several outputs, kept (`keras_io.load_model(all_outputs=True)`): one packed output
        names = output_names(model)
        out = packed.pack_outputs(tf_keras, outs, names, builder.name)
        logger.info("Model %r has %d outputs (%s): trained as one row of %d numbers, each measured; its .tflite "
                    "files give the %d outputs", model.name, len(outs), ", ".join(names), out.shape[-1], len(outs))
    else:
        out = outs[0]
    result = tf_keras.Model(inp, out, name=model.name)
    if log.flattened:
        logger.info("Flattened nested model(s) %s into %s (%d layers)", ", ".join(log.flattened), model.name,
                    len(result.layers))
    return result


def to_keras3(model):
    """The Keras 3 twin of a flat tf-keras model (same layers, names and weights).

    Raises:
        EdgeCompressError: for layers Keras 3 cannot hold (quantization-aware
            training wrappers, TFOpLambda).
    """
    import keras

    if is_keras3(model):
        return model
    builder = _Builder(keras, source_keras3=False, log=TranslationLog())
    if len(model.inputs) > 1:
        ins = [keras.Input(tuple(t.shape)[1:], name=builder.name(n)) for n, t in zip(input_names(model), model.inputs)]
    else:
        ins = [keras.Input(tuple(model.inputs[0].shape)[1:], name=builder.name(_input_name(model)))]
    outs = builder.run(model, ins, f"Model {model.name!r}", whole=True)
    return keras.Model(ins if len(ins) > 1 else ins[0], outs if len(outs) > 1 else outs[0], name=model.name)


def unpacked(model):
    """A packed tf-keras `model` (`models.packed`) with its unpacking layers cut off: a model of the user's
    inputs, in the layout's order, with the same layers and weights after them. What is converted to
    `.tflite`, so each input keeps its own quantization. Any other model is returned as it is."""
    from edgecompress.models.backend import keras as tf_keras

    layout, out_layout = packed.layout(model), packed.output_layout(model)
    if not layout and not out_layout:
        return model
    ins = {n: tf_keras.Input(shape, name=n) for n, shape in layout}
    replace = {cut: (lambda name: lambda _x: ins[name])(n) for cut, n in packed.cut_layers(model).items()}
    outs = []  # the tensors each packed output was flattened from, in order

    def keep(x):
        outs.append(x)
        return x

    for cut in packed.cut_output_layers(model):
        replace[cut] = keep if cut != packed.PACKED_OUTPUT else (lambda x: x[0])  # the concatenation leads nowhere
    builder = _Builder(tf_keras, source_keras3=False, log=TranslationLog(), replace=replace)
    builder.used_names.update(ins)
    if ins:  # `row` feeds only the cut layers, which lead nowhere now
        row = tf_keras.Input(tuple(model.inputs[0].shape)[1:])
    else:
        row = tf_keras.Input(tuple(model.inputs[0].shape)[1:], name=builder.name(_input_name(model)))
    out = builder.run(model, [row], f"Model {model.name!r}", whole=True)[0]
    return tf_keras.Model(list(ins.values()) or row, outs or out, name=model.name)


def rebuild(model, replace: dict, name: str | None = None):
    """A copy of tf-keras `model` (any graph shape) with the layers named in `replace` swapped.

    `replace[name](x)` receives the replaced layer's input tensor and returns
    what stands in its place (e.g. two layers of a low-rank factorization);
    every other layer is re-created from its config with its weights.
    """
    from edgecompress.models.backend import keras as tf_keras

    builder = _Builder(tf_keras, source_keras3=False, log=TranslationLog(), replace=replace)
    inp = tf_keras.Input(tuple(model.inputs[0].shape)[1:], name=builder.name(_input_name(model)))
    out = builder.run(model, [inp], f"Model {model.name!r}", whole=True)[0]
    return tf_keras.Model(inp, out, name=name or model.name)


def _input_name(model) -> str:
    first = model.layers[0] if model.layers else None
    if first is not None and type(first).__name__ == "InputLayer":
        return first.name
    return "image"
