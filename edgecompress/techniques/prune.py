"""Magnitude pruning with tensorflow-model-optimization.

`PruneConfig` is the recipe stage `{"stage": "prune", ...}`. The schedule's
step range is derived from the epochs and the dataset size; layers tfmot
cannot prune are named, and skipped or refused as the user chooses. The
result is stripped of pruning wrappers, optionally after pruning-preserving
quantization-aware training (so int8 keeps the zeros).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from edgecompress.models.distribute import get_strategy
from edgecompress.lite import tasks
from edgecompress.errors import EdgeCompressError
from edgecompress.techniques.configs import PruneConfig  # noqa: F401  (re-exported: the config lives apart)
from edgecompress.models.keras_io import count_params
from edgecompress.models.training import held_out, keras_metric, train

logger = logging.getLogger(__name__)


def _schedule(config: PruneConfig, steps: int):
    import tensorflow_model_optimization as tfmot

    end = max(1, int(steps * config.end_fraction))
    if config.schedule == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(config.final_sparsity, begin_step=0, frequency=max(1, end // 20))
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=config.initial_sparsity, final_sparsity=config.final_sparsity,
        begin_step=0, end_step=end, frequency=max(1, end // 20))


def _wrap(model, config: PruneConfig, steps: int):
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras
    from edgecompress.techniques.support import unprunable

    skipped = unprunable(model)
    if skipped:
        if config.on_unsupported == "error":
            raise EdgeCompressError(
                f"tfmot cannot prune layer(s) {skipped} of model {model.name!r}. Pass "
                "`on_unsupported: \"skip\"` to prune the other layers, or replace those layers."
            )
        logger.warning("Not pruning layer(s) tfmot does not support: %s", ", ".join(skipped))
    kwargs = {"pruning_schedule": _schedule(config, steps)}
    if config.m_by_n:
        kwargs = {"sparsity_m_by_n": config.m_by_n_tuple()}
    if config.policy == "xnnpack":
        kwargs["pruning_policy"] = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()

    # Work on a copy so the caller's model (often the teacher) is never touched.
    base = keras.models.clone_model(model)
    base.set_weights(model.get_weights())
    if config.policy == "xnnpack":
        try:
            return tfmot.sparsity.keras.prune_low_magnitude(base, **kwargs), skipped
        except ValueError as e:
            raise EdgeCompressError(
                f"The XNNPACK pruning policy cannot be applied to model {model.name!r}: {e} "
                "(it needs a model that XNNPACK's sparse inference supports, e.g. MobileNet-style "
                "1x1 convolutions after a strided first convolution). Remove `policy`."
            ) from None

    small = {layer.name for layer in base.layers if layer.weights and layer.count_params() < config.min_params}
    if small:
        logger.info("Keeping small layer(s) dense (< %d weights): %s", config.min_params, ", ".join(sorted(small)))

    def wrap(layer):
        if layer.weights and layer.name not in set(skipped) | small and not isinstance(layer, keras.layers.InputLayer):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **kwargs)
        return layer

    return keras.models.clone_model(base, clone_function=wrap), skipped


def prune(model, dataset, config: PruneConfig = None, *, seed: int = 0, verbose: int = 1, build_teacher=None, **_):
    """Prunes a copy of `model` while fine-tuning on `dataset`'s training split (with `config.distill`,
    against `build_teacher`'s soft targets too: the build's original model).

    Returns:
        (model, metrics): the stripped model (plain Keras layers, zeros in
        the weights) and {"accuracy", "params", "sparsity", "skipped_layers"}.
    """
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras

    config = config or PruneConfig()
    training = config.training(seed)
    keras.utils.set_random_seed(seed)  # before the wrappers: their schedule needs the row count
    data = held_out(dataset, training)
    steps = math.ceil(len(data[0][1]) / config.batch_size) * config.epochs
    with get_strategy(config.strategy).scope():
        pruned, skipped = _wrap(model, config, steps)
        trainer = pruned
        if config.distill:
            from edgecompress.techniques.distill import teacher_trainer

            trainer = teacher_trainer(pruned, build_teacher, config.learning_rate, "prune", dataset.task,
                                      dataset.value_loss)
    train(trainer, dataset, training, data=data, compile=not config.distill, reseed=False, verbose=verbose,
          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    if config.qat:
        from edgecompress.techniques.qat import quantize_aware_train

        stripped = quantize_aware_train(stripped, dataset, "prune_preserve",
                                        config.training(seed, learning_rate=config.learning_rate / 5,
                                                        epochs=config.qat_epochs), verbose=verbose)
    metrics = {"accuracy": keras_metric(stripped, dataset), "params": count_params(stripped),
               "sparsity": keras_sparsity(stripped), "target_sparsity": config.target_sparsity,
               "skipped_layers": skipped}
    logger.info("Pruned: %s, sparsity %.1f%%", tasks.task(dataset.task).says(metrics["accuracy"]), 100 * metrics["sparsity"])
    return stripped, metrics


def keras_sparsity(model) -> float:
    """Share of zeros over the Conv and Dense kernels (variables named `kernel`).

    Reads variables rather than `layer.kernel`: quantization-aware wrappers
    replace that attribute with a symbolic tensor.
    """
    zeros = total = 0
    for w in model.weights:
        if w.name.split("/")[-1].split(":")[0] not in ("kernel", "depthwise_kernel"):
            continue
        k = w.numpy()
        zeros += int(np.count_nonzero(k == 0))
        total += k.size
    return zeros / total if total else 0.0
