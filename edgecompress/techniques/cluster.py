"""Weight clustering (tfmot): each kernel's weights share a few values, fine-tuned.

Deep Compression's second step. Each clusterable layer (Conv2D, Conv1D and Dense
with at least `min_params` weights; not DepthwiseConv2D, which tfmot 0.8
strips back unclustered) is wrapped by
`tfmot.clustering.keras.cluster_weights` with `number_of_clusters` centroids
initialised as the config says, fine-tuned, and stripped back to plain
layers whose kernels hold only the centroid values. After pruning,
`preserve_sparsity` keeps the zeros (they stay one of the values), and
`qat` runs cluster-preserving quantization-aware training (CQAT, or PCQAT
when sparsity is kept too), so int8 conversion does not scatter the clusters.

The `.tflite` file is what counts: `lite.reader.unique_weights` reads back the
distinct values per output channel and per kernel, and the report shows them.
`ClusterConfig` is the recipe stage `{"stage": "cluster", ...}`.
"""

from __future__ import annotations

import logging

from edgecompress.models.distribute import get_strategy
from edgecompress.lite import tasks
from edgecompress.errors import NotApplicable
from edgecompress.models.keras_io import count_params
from edgecompress.models.training import keras_metric, train
from edgecompress.techniques.configs import ClusterConfig

logger = logging.getLogger(__name__)

AUTO_SPARSITY = 0.3  # preserve_sparsity="auto": kernels at least this sparse come from pruning


def _centroid_init(name: str):
    import tensorflow_model_optimization as tfmot

    ci = tfmot.clustering.keras.CentroidInitialization
    return {"kmeans++": ci.KMEANS_PLUS_PLUS, "linear": ci.LINEAR, "density": ci.DENSITY_BASED,
            "random": ci.RANDOM}[name]


def _kernel(layer):
    k = getattr(layer, "depthwise_kernel", None)
    return (k if k is not None else layer.kernel).numpy()


def _wrap(model, config: ClusterConfig):
    """A copy of `model` with each clusterable layer wrapped by tfmot (the caller's model, often the teacher, is
    never touched): (wrapped model, clustered layer names, skipped ones, whether zeros are kept)."""
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras
    from edgecompress.techniques.support import clusterable

    kinds = (keras.layers.Conv2D, keras.layers.Conv1D, keras.layers.Dense)

    def clusters(layer):
        return isinstance(layer, kinds) and not isinstance(layer, keras.layers.DepthwiseConv2D) \
            and layer.count_params() >= config.min_params

    # "auto": the zeros of the kernels it clusters, not of the whole model, whose small layers pruning keeps
    # dense (a tiny ConvNeXt pruned to 50% was 27.7% sparse overall, and its pruned kernels lost their zeros).
    kernels = [layer.get_weights()[0] for layer in model.layers if clusters(layer)]
    sparsity = float(sum((k == 0).sum() for k in kernels) / max(1, sum(k.size for k in kernels)))
    preserve = sparsity >= AUTO_SPARSITY if config.preserve_sparsity == "auto" else bool(config.preserve_sparsity)
    clustered, skipped = [], []
    base = keras.models.clone_model(model)
    base.set_weights(model.get_weights())

    def wrap(layer):
        # DepthwiseConv2D (a Conv2D subclass) is left out: tfmot 0.8 wraps it but strips it back unclustered
        # (measured on MobileNetV2: 1,296 to 3,024 distinct values per kernel after 16-cluster clustering).
        if clusters(layer):
            if clusterable(layer):
                clustered.append(layer.name)
                return tfmot.clustering.keras.cluster_weights(
                    layer, number_of_clusters=config.number_of_clusters,
                    cluster_centroids_init=_centroid_init(config.init), preserve_sparsity=preserve)
            skipped.append(layer.name)
        return layer

    with get_strategy(config.strategy).scope():
        wrapped = keras.models.clone_model(base, clone_function=wrap)
    return wrapped, clustered, skipped, preserve


def cluster(model, dataset, config: ClusterConfig = None, *, seed: int = 0, verbose: int = 1, **_):
    """Clusters a copy of `model`'s weights while fine-tuning on `dataset`'s training split.

    Returns:
        (model, metrics): the stripped model (plain Keras layers whose kernels
        hold at most `number_of_clusters` values) and {"accuracy", "params",
        "unique_weights", "clustered_layers", "skipped_layers",
        "preserve_sparsity", "sparsity"}.
    """
    import numpy as np
    import tensorflow_model_optimization as tfmot

    from edgecompress.models.backend import keras
    from edgecompress.techniques.prune import keras_sparsity

    config = config or ClusterConfig()
    keras.utils.set_random_seed(seed)
    wrapped, clustered, skipped, preserve = _wrap(model, config)
    if not clustered:
        raise NotApplicable(f"Model {model.name!r} has no Conv2D, Conv1D or Dense layer with at least "
                            f"min_params={config.min_params} weights to cluster; lower `min_params`.")
    logger.info("Clustering %d layer(s) into %d values (%s init%s)", len(clustered), config.number_of_clusters,
                config.init, ", zeros kept" if preserve else "")
    if config.epochs:
        train(wrapped, dataset, config.training(seed), reseed=False, verbose=verbose)
    stripped = tfmot.clustering.keras.strip_clustering(wrapped)
    # Stripped weights lose their layer prefix; read each clustered layer's own kernel.
    unique = {layer.name: int(len(np.unique(_kernel(layer)))) for layer in stripped.layers if layer.name in clustered}
    metrics = {"accuracy": keras_metric(stripped, dataset), "params": count_params(stripped),
               "unique_weights": max(unique.values(), default=0), "clustered_layers": clustered,
               "skipped_layers": skipped, "preserve_sparsity": preserve, "sparsity": keras_sparsity(stripped)}
    if config.qat:
        from edgecompress.techniques.qat import quantize_aware_train

        # Measured on the tiny test model: at the clustering rate (1e-4) PCQAT moved the zero centroid and the
        # int8 file lost every zero (60% -> 0%); a tenth of it keeps both the zeros and the clusters.
        metrics["qat"] = "sparsity_cluster_preserve" if preserve else "cluster_preserve"
        stripped = quantize_aware_train(stripped, dataset, metrics["qat"],
                                        config.training(seed, learning_rate=config.learning_rate / 10,
                                                        epochs=config.qat_epochs), verbose=verbose)
    logger.info("Clustered: %s, at most %d distinct values per kernel", tasks.task(dataset.task).says(metrics["accuracy"]),
                metrics["unique_weights"])
    return stripped, metrics
