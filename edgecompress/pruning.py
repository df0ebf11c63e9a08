"""Magnitude pruning with tensorflow-model-optimization.

`PruneConfig` is the recipe stage `{"stage": "prune", ...}`. The schedule's
step range is derived from the epochs and the dataset size; layers tfmot
cannot prune are named, and skipped or refused as the user chooses. The
result is stripped of pruning wrappers, optionally after pruning-preserving
quantization-aware training (so int8 keeps the zeros).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import warnings

import numpy as np

from edgecompress.configs import _Config, _require
from edgecompress.distribute import STRATEGIES, get_strategy
from edgecompress.errors import EdgeCompressError
from edgecompress.models import compile_classifier, count_params, keras_accuracy, split_validation
from edgecompress.preprocessing import to_model_input

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PruneConfig(_Config):
    """Prune the model's weights to a target sparsity while fine-tuning.

    Args:
        final_sparsity: Share of weights set to zero at the end, in [0, 1).
            Defaults to 0.8.
        initial_sparsity: Sparsity at the first pruning step (polynomial
            schedule only), in [0, final_sparsity]. Defaults to 0.5.
        schedule: `"polynomial"` (PolynomialDecay from initial to final) or
            `"constant"` (ConstantSparsity at final). Defaults to
            `"polynomial"`.
        epochs: Fine-tuning epochs while pruning. Defaults to 3.
        end_fraction: Share of the steps over which sparsity ramps up; the
            rest fine-tunes at the final sparsity. Defaults to 0.7.
        m_by_n: Structured sparsity such as `"2:4"` (2 zeros in every 4
            weights). Defaults to None.
        policy: `"xnnpack"` to prune only what XNNPACK's sparse inference can
            use (tfmot's `PruneForLatencyOnXNNPack`). Defaults to None.
        qat: Pruning-preserving quantization-aware training after pruning.
            Defaults to False.
        qat_epochs: Epochs of that training. Defaults to 1.
        on_unsupported: `"skip"` layers tfmot cannot prune (named in the log)
            or `"error"`. Defaults to `"skip"`.
        min_params: Leave layers with fewer weights dense: pruning them saves
            little and costs accuracy (a first 3x3 convolution has a few
            hundred). Defaults to 1000.
        learning_rate: Adam learning rate while pruning. Defaults to 5e-4.
        batch_size: Defaults to 64.
        strategy: One of `distribute.STRATEGIES`. Defaults to `"default"`.
    """

    STAGE = "prune"

    final_sparsity: float = 0.8
    initial_sparsity: float = 0.5
    schedule: str = "polynomial"
    epochs: int = 3
    end_fraction: float = 0.7
    m_by_n: str | None = None
    policy: str | None = None
    qat: bool = False
    qat_epochs: int = 1
    on_unsupported: str = "skip"
    min_params: int = 1000
    learning_rate: float = 5e-4
    batch_size: int = 64
    strategy: str = "default"

    def __post_init__(self):
        _require(0 <= self.final_sparsity < 1,
                 "Received an invalid value for `final_sparsity`, expected a number in [0, 1). "
                 f"Received: final_sparsity={self.final_sparsity!r}")
        _require(0 <= self.initial_sparsity <= self.final_sparsity,
                 "Received an invalid value for `initial_sparsity`, expected a number in [0, final_sparsity]. "
                 f"Received: initial_sparsity={self.initial_sparsity!r} (final_sparsity={self.final_sparsity!r})")
        _require(self.schedule in ("polynomial", "constant"),
                 f"Received an invalid value for `schedule`, expected 'polynomial' or 'constant'. Received: schedule={self.schedule!r}")
        _require(isinstance(self.epochs, int) and self.epochs >= 1,
                 f"Received an invalid value for `epochs`, expected an integer >= 1. Received: epochs={self.epochs!r}")
        _require(0 < self.end_fraction <= 1,
                 f"Received an invalid value for `end_fraction`, expected a number in (0, 1]. Received: end_fraction={self.end_fraction!r}")
        if self.m_by_n is not None:
            self.m_by_n_tuple()
        _require(self.policy in (None, "xnnpack"),
                 f"Received an invalid value for `policy`, expected null or 'xnnpack'. Received: policy={self.policy!r}")
        _require(self.on_unsupported in ("skip", "error"),
                 f"Received an invalid value for `on_unsupported`, expected 'skip' or 'error'. Received: on_unsupported={self.on_unsupported!r}")
        _require(self.strategy in STRATEGIES,
                 f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")

    def m_by_n_tuple(self):
        try:
            m, n = (int(v) for v in str(self.m_by_n).split(":"))
        except ValueError:
            m = n = 0
        if not 0 < m < n:
            raise EdgeCompressError(
                f"Received an invalid value for `m_by_n`, expected 'M:N' with 0 < M < N such as '2:4'. "
                f"Received: m_by_n={self.m_by_n!r}"
            )
        return (m, n)

    @property
    def target_sparsity(self) -> float:
        if self.m_by_n:
            m, n = self.m_by_n_tuple()
            return m / n
        return self.final_sparsity

    def apply(self, model, dataset, *, teacher=None, seed=0, verbose=1):
        """Prunes `model` on `dataset`; returns (stripped model, metrics)."""
        return prune(model, dataset, self, seed=seed, verbose=verbose)


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
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    from edgecompress._tf import keras

    skipped = [layer.name for layer in model.layers
               if layer.weights and not prune_registry.PruneRegistry.supports(layer)
               and not isinstance(layer, tfmot.sparsity.keras.PrunableLayer)]
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


def prune(model, dataset, config: PruneConfig = None, *, seed: int = 0, verbose: int = 1):
    """Prunes a copy of `model` while fine-tuning on `dataset`'s training split.

    Returns:
        (model, metrics): the stripped model (plain Keras layers, zeros in
        the weights) and {"accuracy", "params", "sparsity", "skipped_layers"}.
    """
    import tensorflow_model_optimization as tfmot

    from edgecompress._tf import keras

    config = config or PruneConfig()
    keras.utils.set_random_seed(seed)
    x = to_model_input(dataset.x_train, dataset.preprocessing)
    (xt, yt), val = split_validation(x, dataset.y_train, 0.1, seed)
    steps = math.ceil(len(yt) / config.batch_size) * config.epochs
    with get_strategy(config.strategy).scope():
        pruned, skipped = _wrap(model, config, steps)
        compile_classifier(pruned, config.learning_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned.fit(xt, yt, batch_size=config.batch_size, epochs=config.epochs, validation_data=val,
                   callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=verbose, shuffle=True)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    if config.qat:
        stripped = _prune_preserving_qat(stripped, dataset, config, seed=seed, verbose=verbose)
    metrics = {"accuracy": keras_accuracy(stripped, dataset), "params": count_params(stripped),
               "sparsity": keras_sparsity(stripped), "target_sparsity": config.target_sparsity,
               "skipped_layers": skipped}
    logger.info("Pruned: top-1 %.2f%%, sparsity %.1f%%", 100 * metrics["accuracy"], 100 * metrics["sparsity"])
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


@functools.lru_cache(maxsize=None)
def float_quantize_config():
    """tfmot `QuantizeConfig` that leaves a layer in float (registered, so QAT models save and load).

    For weightless layers tfmot's 8-bit registry does not know (Rescaling,
    Normalization, Multiply...): without one, `quantize_apply` refuses the
    whole model.
    """
    import tensorflow_model_optimization as tfmot

    from edgecompress._tf import keras

    @keras.utils.register_keras_serializable(package="edgecompress")
    class FloatQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return FloatQuantizeConfig


def _prune_preserving_qat(model, dataset, config, *, seed, verbose):
    """Quantization-aware training that keeps pruned weights at zero."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        default_8bit_prune_preserve_quantize_scheme as pp,
    )

    from edgecompress._tf import keras

    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as qreg,
    )

    keras.utils.set_random_seed(seed)
    registry = qreg.Default8BitQuantizeRegistry()
    # Preprocessing layers (Rescaling, Normalization) and a few others have no 8-bit QAT config: they train
    # in float, and the converter quantizes them after training like any other layer.
    skipped = [layer.name for layer in model.layers
               if not isinstance(layer, keras.layers.InputLayer) and not registry.supports(layer)]
    if skipped:
        logger.info("Quantization-aware training leaves %d layer(s) in float: %s", len(skipped), ", ".join(skipped))

    noop = float_quantize_config()

    def annotate(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.InputLayer):
            return clone
        if layer.name not in skipped:
            return tfmot.quantization.keras.quantize_annotate_layer(clone)
        if layer.weights:  # BatchNormalization: the scheme folds it into the convolution before it
            return clone
        return tfmot.quantization.keras.quantize_annotate_layer(clone, quantize_config=noop())

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    with tfmot.quantization.keras.quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(annotated, pp.Default8BitPrunePreserveQuantizeScheme())
    compile_classifier(qat, config.learning_rate / 5)
    x = to_model_input(dataset.x_train, dataset.preprocessing)
    qat.fit(x, dataset.y_train, batch_size=config.batch_size, epochs=config.qat_epochs, verbose=verbose, shuffle=True)
    return qat
