"""Low-rank (truncated SVD) factorization of Dense, Conv2D and Conv1D kernels.

A Dense kernel W (n_in x n_out) becomes two Dense layers through rank r:
`Dense(r, linear, no bias)` then `Dense(n_out)` with the original bias and
activation. A k x k Conv2D with c_out filters becomes a k x k Conv2D with r
filters (same strides and padding) then a 1 x 1 Conv2D with c_out filters; a Conv1D the same way in one
dimension.
The rank of each layer is the smallest that keeps `energy` of the squared
singular values, or the one that meets a parameter `ratio`; layers where
factorizing would not save parameters are left alone. A short fine-tune
follows. `FactorizeConfig` is the recipe stage `{"stage": "factorize", ...}`.
"""

from __future__ import annotations

import logging

import numpy as np

from edgecompress.models.distribute import get_strategy
from edgecompress.errors import EdgeCompressError
from edgecompress.techniques.configs import FactorizeConfig  # noqa: F401  (re-exported: the config lives apart)
from edgecompress.models.keras_io import count_params
from edgecompress.models.training import keras_metric

logger = logging.getLogger(__name__)


def _matrix(layer) -> np.ndarray:
    """The kernel as a 2-D matrix (inputs x outputs)."""
    k = layer.get_weights()[0]
    return k.reshape(-1, k.shape[-1])


def choose_rank(s: np.ndarray, n_in: int, n_out: int, config: FactorizeConfig, name: str) -> int:
    """The rank for one layer from its singular values `s`."""
    full = min(n_in, n_out)
    if name in config.ranks:
        r = config.ranks[name]
        if r > full:
            raise EdgeCompressError(
                f"Received an invalid value for `ranks[{name!r}]`: {r}, but layer {name!r} "
                f"({n_in} x {n_out}) allows a rank of at most {full}."
            )
        return r
    if config.ratio is not None:
        return max(1, int(config.ratio * n_in * n_out / (n_in + n_out)))
    energy = np.cumsum(s**2) / np.sum(s**2)
    return int(np.searchsorted(energy, config.energy - 1e-12) + 1)


def macs(model) -> int:
    """Multiply-accumulates of one inference through Conv2D, Dense and depthwise layers."""
    from edgecompress.models.backend import keras

    total = 0
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)
        out = layer.output_shape if hasattr(layer, "output_shape") else None
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, c, m = layer.depthwise_kernel.shape
            total += int(np.prod(out[1:3])) * kh * kw * c * m
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            total += int(np.prod(out[1:3])) * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Conv1D):
            k, cin, cout = layer.kernel.shape
            total += int(out[1]) * k * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            n_in, n_out = layer.kernel.shape
            total += int(np.prod(out[1:-1]) if len(out) > 2 else 1) * n_in * n_out
    return int(total)


def factorize(model, dataset=None, config: FactorizeConfig = None, *, seed: int = 0, verbose: int = 1,
              build_teacher=None, **_):
    """Returns (factorized model, metrics) with params and MACs before and after (with `config.distill`, the
    fine-tune learns from `build_teacher`'s soft targets too: the build's original model)."""
    from edgecompress.models.backend import keras

    config = config or FactorizeConfig()
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv1D))
                and not isinstance(l, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                                       keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose))]
    candidates = set(config.layers) if config.layers is not None else {l.name for l in weighted[:-1]}
    unknown = sorted((candidates | set(config.ranks)) - {l.name for l in weighted})
    if unknown:
        raise EdgeCompressError(
            f"Layer(s) {unknown} named in the factorize stage are not Dense, Conv2D or Conv1D layers of model "
            f"{model.name!r}. Those layers: {[l.name for l in weighted]}"
        )
    candidates |= set(config.ranks)
    plan = {}
    for layer in weighted:
        if layer.name not in candidates:
            continue
        w = _matrix(layer)
        n_in, n_out = w.shape
        if w.size < config.min_params and layer.name not in config.ranks:
            continue
        if any(d != 1 for d in getattr(layer, "dilation_rate", (1,))) or getattr(layer, "groups", 1) != 1:
            logger.info("Leaving %s alone: dilated or grouped convolution.", layer.name)
            continue
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        r = choose_rank(s, n_in, n_out, config, layer.name)
        if r * (n_in + n_out) >= n_in * n_out and layer.name not in config.ranks:
            logger.info("Leaving %s alone: rank %d would not save parameters.", layer.name, r)
            continue
        root = np.sqrt(s[:r])
        plan[layer.name] = (r, u[:, :r] * root, root[:, None] * vt[:r])
    before = {"params": count_params(model), "macs": macs(model)}
    with get_strategy(config.strategy).scope():
        new = _rebuild(model, plan)
    metrics = {"params_before": before["params"], "macs_before": before["macs"],
               "params": count_params(new), "macs": macs(new),
               "ranks": {k: v[0] for k, v in plan.items()}}
    if dataset is not None and config.finetune_epochs and plan:
        from edgecompress.models.training import train

        trainer = new
        if config.distill:
            from edgecompress.techniques.distill import teacher_trainer

            with get_strategy(config.strategy).scope():
                trainer = teacher_trainer(new, build_teacher, config.learning_rate, "factorize", dataset.task,
                                          dataset.value_loss)
        train(trainer, dataset, config.training(seed, epochs=config.finetune_epochs), compile=not config.distill,
              verbose=verbose)
    if dataset is not None:
        metrics["accuracy"] = keras_metric(new, dataset)
    logger.info("Factorized %d layer(s): %d -> %d params, %d -> %d MACs", len(plan), before["params"],
                metrics["params"], before["macs"], metrics["macs"])
    return new, metrics


def _rebuild(model, plan):
    """`model` with each planned layer replaced by two through rank r (any graph: chains, residuals...)."""
    from edgecompress.models.backend import keras
    from edgecompress.models.translate import rebuild

    def factorized(layer):
        r, a, b = plan[layer.name]
        cfg = layer.get_config()
        bias = layer.get_weights()[1:] if layer.use_bias else []

        def apply(x):
            if isinstance(layer, keras.layers.Dense):
                first = keras.layers.Dense(r, use_bias=False, name=f"{layer.name}_lr_a")
                second = keras.layers.Dense.from_config(dict(cfg, name=f"{layer.name}_lr_b"))
                shapes = (a, b)
            elif isinstance(layer, keras.layers.Conv1D):
                k, cin, cout = layer.get_weights()[0].shape
                first = keras.layers.Conv1D(r, k, strides=layer.strides, padding=layer.padding, use_bias=False,
                                            name=f"{layer.name}_lr_a")
                second = keras.layers.Conv1D.from_config(dict(cfg, name=f"{layer.name}_lr_b", kernel_size=(1,),
                                                              strides=(1,), padding="valid"))
                shapes = (a.reshape(k, cin, r), b.reshape(1, r, cout))
            else:
                kh, kw, cin, cout = layer.get_weights()[0].shape
                first = keras.layers.Conv2D(r, (kh, kw), strides=layer.strides, padding=layer.padding,
                                            use_bias=False, name=f"{layer.name}_lr_a")
                second = keras.layers.Conv2D.from_config(dict(cfg, name=f"{layer.name}_lr_b", kernel_size=(1, 1),
                                                              strides=(1, 1), padding="valid"))
                shapes = (a.reshape(kh, kw, cin, r), b.reshape(1, 1, r, cout))
            y = second(first(x))
            first.set_weights([shapes[0]])
            second.set_weights([shapes[1], *bias])
            return y

        return apply

    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    return rebuild(model, {name: factorized(model.get_layer(name)) for name in plan}, name=f"{model.name}_lowrank")
