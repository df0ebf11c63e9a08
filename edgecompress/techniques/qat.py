"""Quantization-aware training that preserves what compression made (tfmot's collaborative optimization).

After pruning (zeros), clustering (shared values) or both, plain QAT would
undo them; tfmot's preserving schemes keep them while the model learns its
int8 ranges: PQAT (`prune_preserve`), CQAT (`cluster_preserve`) and PCQAT
(`sparsity_cluster_preserve`). Layers tfmot's 8-bit registry does not know
train in float through a registered no-op `QuantizeConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

from edgecompress.configs import TrainConfig
from edgecompress.models.training import train

logger = logging.getLogger(__name__)

QAT_SCHEMES = ("prune_preserve", "cluster_preserve", "sparsity_cluster_preserve")


@functools.lru_cache(maxsize=None)
def float_quantize_config():
    """tfmot `QuantizeConfig` that leaves a layer in float (registered, so QAT models save and load).

    For weightless layers tfmot's 8-bit registry does not know (Rescaling,
    Normalization, Multiply...): without one, `quantize_apply` refuses the
    whole model.
    """
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras

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


def _scheme(name: str):
    """tfmot's collaborative-optimization QAT scheme by name."""
    if name == "prune_preserve":
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
            default_8bit_prune_preserve_quantize_scheme as pp,
        )

        return pp.Default8BitPrunePreserveQuantizeScheme()
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        default_8bit_cluster_preserve_quantize_scheme as cp,
    )

    # PCQAT: keeps the clusters and the zeros of a pruned-then-clustered model.
    return cp.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=name == "sparsity_cluster_preserve")


def quantize_aware_train(model, dataset, preserve: str, training: TrainConfig, *, verbose: int = 1):
    """Quantization-aware training that keeps what an earlier stage made (tfmot's collaborative optimization).

    Args:
        preserve: `QAT_SCHEMES`: "prune_preserve" (zeros stay zero, PQAT),
            "cluster_preserve" (weights stay on their centroids, CQAT) or
            "sparsity_cluster_preserve" (both, PCQAT).
        training: The stage's `TrainConfig` for it (`_StageConfig.training`: its rate and `qat_epochs`); it trains
            on the whole training split, holding none out.
    """
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras

    from edgecompress.techniques.support import not_quantize_aware

    keras.utils.set_random_seed(training.seed)  # before the annotated copy is built
    skipped = not_quantize_aware(model)
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
        qat = tfmot.quantization.keras.quantize_apply(annotated, _scheme(preserve))
    # The annotated copy is built outside any strategy's scope, so it trains in the default one.
    train(qat, dataset, dataclasses.replace(training, validation_fraction=0.0, strategy="default"), reseed=False,
          verbose=verbose)
    return qat
