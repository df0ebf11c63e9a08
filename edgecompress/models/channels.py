"""Channel groups: which channels must be kept together when a model is made narrower.

A residual `Add` needs both branches to keep the same channels; a
squeeze-excite `Multiply` ties the excitation convolution's outputs to the
block's channels; a depthwise convolution keeps its input's channels (times
its depth multiplier). `plan(model, width)` walks a flat tf-keras graph once,
puts every tensor's channels into a *space*, merges the spaces that element-
wise layers join (union-find), and then keeps, per space, the `width` share
of channels (never fewer than `MIN_CHANNELS`) whose producing kernels have the largest L1 norm (summed over
every producer of the space, each normalized by its mean). Spaces that touch
the model input or output, a concatenation, or a layer it does not know keep
every channel, so anything unusual costs compression, never correctness.

`scaled_model(model, plan)` rebuilds the narrower architecture and
`inherit(teacher, student, plan)` copies the kept channels' weights.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

PRODUCERS = ("Conv1D", "Conv2D", "Dense", "SeparableConv2D", "Conv2DTranspose")
# Layers that act on each channel alone: the channels pass through (their weights, if any, are per channel).
CHANNELWISE = frozenset({
    "BatchNormalization", "LayerNormalization", "PReLU", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D", "Activation", "ReLU", "LeakyReLU", "ELU", "ZeroPadding2D",
    "Cropping2D", "UpSampling2D", "GaussianNoise", "GaussianDropout", "Softmax",
})
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
# The fewest channels a space is scaled to (a space narrower than this keeps its own): MobileNet's `min_value`
# in `make_divisible`. A narrow space is often a bottleneck the task sized, not the model's capacity: MLPerf
# Tiny's anomaly-detection autoencoder has an 8-unit code, which width 0.375 made 3 units.
MIN_CHANNELS = 8


@dataclasses.dataclass(frozen=True)
class Chan:
    """A tensor's channels: space `sid`, optionally expanded (`flat`: Flatten positions; `mult`: depth multiplier)."""

    sid: int
    kind: str = "plain"
    factor: int = 1


class _Spaces:
    def __init__(self):
        self.parent, self.size, self.fixed, self.why = [], [], [], {}

    def new(self, size, fixed=False, why=None):
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.fixed.append(fixed)
        if why:
            self.why[len(self.parent) - 1] = why
        return len(self.parent) - 1

    def root(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a, b):
        a, b = self.root(a), self.root(b)
        if a != b:
            self.parent[b] = a
            self.fixed[a] = self.fixed[a] or self.fixed[b]
            if b in self.why:
                self.why.setdefault(a, self.why[b])

    def fix(self, s, why):
        r = self.root(s)
        if not self.fixed[r]:
            self.fixed[r] = True
            self.why[r] = why


@dataclasses.dataclass
class Plan:
    """The channels each layer keeps; `kept[root]` is None where a space keeps all."""

    width: float
    spaces: _Spaces
    outputs: dict  # layer name -> Chan of its output
    inputs: dict  # layer name -> Chan of its (first) input
    kept: dict  # root space id -> sorted index array, or None (all)
    sizes: dict  # root space id -> the student's channel count (above the teacher's for width > 1)
    reshapes: set  # Reshape layers whose last dimension follows their input's channels
    floor: int  # the fewest channels a space is scaled to
    floored: int  # spaces that keep every channel because `width` of them is fewer than `floor`

    def indices(self, chan: Chan | None):
        """The kept channel indices of a tensor, or None for all."""
        if chan is None:
            return None
        k = self.kept.get(self.spaces.root(chan.sid))
        if k is None:
            return None
        if chan.kind == "flat":
            return (np.arange(chan.factor)[:, None] * self.spaces.size[self.spaces.root(chan.sid)] + k).reshape(-1)
        if chan.kind == "mult":
            return (k[:, None] * chan.factor + np.arange(chan.factor)).reshape(-1)
        return k

    def count(self, chan: Chan) -> int:
        root = self.spaces.root(chan.sid)
        return self.sizes.get(root, self.spaces.size[root]) * chan.factor

    def full_width(self) -> list:
        """(reason) for each space that keeps every channel although it has producers."""
        why = sorted({self.spaces.why[r] for r in self.kept
                      if self.kept[r] is None and self.spaces.fixed[r] and self.spaces.why.get(r)})
        if self.floored:
            why.append(f"{self.floored} channel space(s) of at most {self.floor} channels, the fewest a space is "
                       f"scaled to (min_channels={self.floor})")
        return why


def inbound_layers(model) -> dict[str, list[str]]:
    """Layer name -> names of the layers feeding it."""
    config = model.get_config()
    if "layers" not in config or not any("inbound_nodes" in lc for lc in config["layers"]):  # Sequential
        names = [layer.name for layer in model.layers]
        return {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}

    def producers(obj):
        # tf-keras writes [[name, node, tensor, kwargs], ...] per node, but a layer
        # called with keyword arguments (TFOpLambda) writes one node unwrapped.
        if isinstance(obj, (list, tuple)) and len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            yield obj[0]
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                yield from producers(x)
        elif isinstance(obj, dict):
            for x in obj.values():
                yield from producers(x)

    return {lc["config"]["name"]: list(dict.fromkeys(producers(lc.get("inbound_nodes") or [])))
            for lc in config["layers"]}


def _channels(shape) -> int:
    return int(shape[-1]) if shape and shape[-1] is not None else 0


def analyse(model, width: float, min_channels: int | None = None) -> Plan:
    """Walks `model` (flat tf-keras) and decides, per channel space, which channels a `width`-scaled copy keeps:
    `width` of them, but never fewer than `min_channels` (default `MIN_CHANNELS`; a narrower space keeps all)."""
    floor = MIN_CHANNELS if min_channels is None else int(min_channels)
    if floor < 1:
        raise EdgeCompressError(f"Received an invalid value for `min_channels`, expected an integer of at least 1. "
                                f"Received: min_channels={min_channels!r}")
    inbound = inbound_layers(model)
    sp = _Spaces()
    out: dict[str, Chan] = {}
    ins: dict[str, Chan] = {}
    reshapes: set[str] = set()
    producers: dict[int, list] = {}
    for layer in model.layers:
        cls, name = type(layer).__name__, layer.name
        srcs = [out[n] for n in inbound.get(name, []) if n in out]
        if srcs:
            ins[name] = srcs[0]
        n_out = _channels(layer.output_shape if not isinstance(layer.output_shape, list) else layer.output_shape[0])
        called_twice = len(getattr(layer, "_inbound_nodes", [])) > 1

        def fixed_new(why):
            for s in srcs:
                sp.fix(s.sid, why)
            return Chan(sp.new(n_out, True, why))

        if cls == "InputLayer":
            out[name] = Chan(sp.new(n_out, True, "the model input"))
        elif called_twice:
            out[name] = fixed_new(f"layer {name!r} is called more than once")
        elif _depthwise_groups(layer) and srcs and srcs[0].kind == "plain":
            out[name] = srcs[0]  # a convolution of one group per channel (ConvNeXt's): channels pass through
        elif cls in PRODUCERS and getattr(layer, "groups", 1) == 1:
            if srcs and srcs[0].kind != "plain" and cls in ("SeparableConv2D", "Conv2DTranspose"):
                sp.fix(srcs[0].sid, f"{cls} {name!r}")
            sid = sp.new(n_out)
            producers.setdefault(sid, []).append(layer)
            out[name] = Chan(sid)
        elif cls == "DepthwiseConv2D" and srcs and srcs[0].kind == "plain":
            m = int(layer.depth_multiplier)
            out[name] = srcs[0] if m == 1 else Chan(srcs[0].sid, "mult", m)
        elif cls in CHANNELWISE and srcs and (srcs[0].kind == "plain" or not layer.weights):
            if cls == "Softmax" or (cls == "Activation" and layer.get_config().get("activation") == "softmax"):
                sp.fix(srcs[0].sid, f"softmax {name!r} normalizes over channels")
            out[name] = srcs[0]
        elif cls == "Rescaling" and srcs and np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0:
            out[name] = srcs[0]
        elif cls == "Reshape" and srcs and srcs[0].kind == "plain" and tuple(layer.target_shape)[-1] == sp.size[
                sp.root(srcs[0].sid)] and int(np.prod(layer.target_shape[:-1])) == 1:
            reshapes.add(name)  # squeeze-excite's (1, 1, C): channels pass through
            out[name] = srcs[0]
        elif cls == "Flatten" and srcs and srcs[0].kind == "plain":
            positions = int(np.prod(layer.input_shape[1:-1]))
            out[name] = srcs[0] if positions == 1 else Chan(srcs[0].sid, "flat", positions)
        elif cls in MERGES and srcs and all(s.kind == "plain" for s in srcs):
            for s in srcs[1:]:
                sp.union(srcs[0].sid, s.sid)
            out[name] = srcs[0]
        else:
            out[name] = fixed_new(f"{cls} {name!r}")
    final = out[model.layers[-1].name] if model.layers else None
    for layer in model.layers:  # every tensor the model outputs keeps its channels
        if layer.output is model.outputs[0] or layer is model.layers[-1]:
            sp.fix(out[layer.name].sid, "the model output")
    if final is not None:
        sp.fix(final.sid, "the model output")
    groups: dict[int, list] = {}
    for sid, layers in producers.items():
        groups.setdefault(sp.root(sid), []).extend(layers)
    kept, sizes, floored = _keep(sp, groups, width, floor)
    if min_channels is None and floored and all(k is None for k in kept.values()):
        # Every scalable space is at most the floor (a tiny model): the floor would leave the teacher itself.
        logger.info("Every channel space that width=%g would narrow has at most %d channels (MIN_CHANNELS): "
                    "scaling them below that, as asked", width, floor)
        floor = 1
        kept, sizes, floored = _keep(sp, groups, width, floor)
    return Plan(width, sp, out, ins, kept, sizes, reshapes, floor, floored)


def _keep(sp, groups: dict, width: float, floor: int) -> tuple[dict, dict, int]:
    """Per root space: the kept channel indices (None for all), the student's count, and how many spaces keep
    every channel only because `width` of them is fewer than `floor`."""
    kept, sizes, floored = {}, {}, 0
    for root, layers in groups.items():
        size = sp.size[root]
        if sp.fixed[root]:
            kept[root] = None
            continue
        wanted = int(round(size * width))
        n = max(min(size, floor), wanted)
        sizes[root] = n
        if n >= size:
            kept[root] = None
            floored += wanted < size
            continue
        importance = np.zeros(size)
        for layer in layers:
            w = np.abs(layer.get_weights()[1 if type(layer).__name__ == "SeparableConv2D" else 0])
            per = w.reshape(-1, w.shape[-1]).sum(0) if type(layer).__name__ != "Conv2DTranspose" else \
                np.moveaxis(w, -2, -1).reshape(-1, w.shape[-2]).sum(0)
            importance += per / (per.mean() + 1e-12)
        kept[root] = np.sort(np.argsort(-importance, kind="stable")[:n])
    return kept, sizes, floored


def _depthwise_groups(layer) -> bool:
    """A Conv1D or Conv2D of one group per channel (`groups == filters ==` its input's channels): a depthwise
    convolution written as a grouped one (keras.applications' ConvNeXt), whose channels pass through."""
    groups = getattr(layer, "groups", 1)
    if type(layer).__name__ not in ("Conv1D", "Conv2D") or groups == 1:
        return False
    shape = layer.input_shape if not isinstance(layer.input_shape, list) else layer.input_shape[0]
    return groups == layer.filters == shape[-1]


def scaled_model(model, plan: Plan, *, name: str, dropout: float | None = None):
    """The architecture of `model` with each layer's channels as `plan` keeps them (fresh weights)."""
    from edgecompress.models.backend import keras

    config = model.get_config()
    for lc in config["layers"]:
        cfg = lc["config"]
        lname = cfg.get("name")
        # A teacher saved or used frozen carries trainable=False; the student must learn.
        if "trainable" in cfg:
            cfg["trainable"] = True
        if dropout is not None and lc["class_name"] == "Dropout":
            cfg["rate"] = float(dropout)
        if lname not in plan.outputs:
            continue
        if lc["class_name"] in PRODUCERS:
            key = "filters" if "filters" in cfg else "units"
            depthwise = cfg.get("groups", 1) > 1 and cfg.get("groups") == cfg.get(key)
            cfg[key] = plan.count(plan.outputs[lname])
            if depthwise:
                cfg["groups"] = cfg[key]
        elif lname in plan.reshapes:
            cfg["target_shape"] = [*list(cfg["target_shape"])[:-1], plan.count(plan.outputs[lname])]
    config["name"] = name
    try:
        cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
        return cls.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise EdgeCompressError(f"Cannot rebuild model {model.name!r} at width {plan.width}: {e}. Pass a `student` "
                                "model instead.") from None


def _take(a, idx, axis):
    return a if idx is None else np.take(a, idx, axis=axis)


def inherit(teacher, student, plan: Plan) -> None:
    """Copies the channels `plan` keeps from `teacher` into `student` (built by `scaled_model`)."""
    for root, n in plan.sizes.items():
        if n > plan.spaces.size[root]:
            producer = next(name for name, c in plan.outputs.items() if plan.spaces.root(c.sid) == root)
            raise EdgeCompressError(f"Cannot inherit weights into layer {producer!r}: the student's has {n} outputs, "
                                    f"the teacher's {plan.spaces.size[root]}. Use init='random'.")
    for tl in teacher.layers:
        weights = tl.get_weights()
        if not weights:
            continue
        cls = type(tl).__name__
        sl = student.get_layer(tl.name)
        k_in = plan.indices(plan.inputs.get(tl.name))
        k_out = plan.indices(plan.outputs.get(tl.name))
        if _depthwise_groups(tl):  # kernel (..., 1, channels): one input channel per group
            new = [_take(weights[0], k_out, -1)] + [_take(b, k_out, 0) for b in weights[1:]]
        elif cls in ("Conv1D", "Conv2D", "Dense"):
            new = [_take(_take(weights[0], k_in, -2), k_out, -1)] + [_take(b, k_out, 0) for b in weights[1:]]
        elif cls == "Conv2DTranspose":
            new = [_take(_take(weights[0], k_out, -2), k_in, -1)] + [_take(b, k_out, 0) for b in weights[1:]]
        elif cls == "DepthwiseConv2D":
            new = [_take(weights[0], k_in, 2)] + [_take(b, k_out, 0) for b in weights[1:]]
        elif cls == "SeparableConv2D":
            m = weights[0].shape[-1]
            k_mid = None if k_in is None else (k_in[:, None] * m + np.arange(m)).reshape(-1)
            new = [_take(weights[0], k_in, 2), _take(_take(weights[1], k_mid, 2), k_out, 3)] + \
                  [_take(b, k_out, 0) for b in weights[2:]]
        else:  # per-channel vectors (BatchNormalization, PReLU, ...) follow the kept channels; the rest is copied
            n = tl.output_shape[-1] if not isinstance(tl.output_shape, list) else None
            new = [_take(v, k_out, v.ndim - 1) if v.ndim and v.shape[-1] == n else v for v in weights]
        shapes = [w.shape for w in sl.get_weights()]
        if [w.shape for w in new] != shapes:
            raise EdgeCompressError(f"Cannot inherit weights into layer {tl.name!r} ({cls}): kept shapes "
                                    f"{[w.shape for w in new]}, student's {shapes}. Use init='random'.")
        sl.set_weights(new)
