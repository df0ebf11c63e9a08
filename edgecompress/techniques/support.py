"""What tfmot can wrap, in one place: the layer-support checks the stages and `check-model` share.

Each reads tfmot's own registries (`PruneRegistry`, `ClusteringRegistry`, `Default8BitQuantizeRegistry`), so
`check-model` says exactly what a stage will skip.
"""

from __future__ import annotations


def unprunable(model) -> list[str]:
    """Layers with weights tfmot's `PruneRegistry` cannot prune (and that do not prune themselves as a
    `PrunableLayer`): what `prune` skips, or refuses with `on_unsupported="error"`."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    return [layer.name for layer in model.layers
            if layer.weights and not prune_registry.PruneRegistry.supports(layer)
            and not isinstance(layer, tfmot.sparsity.keras.PrunableLayer)]


def clusterable(layer) -> bool:
    """Whether tfmot's `ClusteringRegistry` can cluster `layer`."""
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    return ClusteringRegistry.supports(layer)


def not_quantize_aware(model) -> list[str]:
    """Layers tfmot's 8-bit QAT registry has no config for (preprocessing layers, a few others): they train in
    float, and the converter quantizes them after training like any other layer."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as qreg,
    )

    from edgecompress.models.backend import keras

    registry = qreg.Default8BitQuantizeRegistry()
    return [layer.name for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and not registry.supports(layer)]
