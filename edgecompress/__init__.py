"""edgecompress: compress Keras models and ship them as `.tflite` to phones and boards.

The public API is small and imported lazily, so that the device-side modules
(`edgecompress.lite.runtime`, `edgecompress.lite.latency`, `edgecompress.lite.evaluation`)
never pull in TensorFlow:

>>> import edgecompress as ec
>>> report = ec.build_edge(ec.BuildOptions(epochs=2))
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BuildOptions": "edgecompress.builder.options",
    "build_edge": "edgecompress.pipeline",
    "Preprocessing": "edgecompress.configs",
    "TrainConfig": "edgecompress.configs",
    "ConversionConfig": "edgecompress.quantize.schemes",
    "ModelSpec": "edgecompress.configs",
    "Quantization": "edgecompress.quantize.schemes",
    "Recipe": "edgecompress.recipes.recipe",
    "load_recipe": "edgecompress.recipes.recipe",
    "load_dataset": "edgecompress.data.loading",
    "Dataset": "edgecompress.data.dataset",
    "SearchSettings": "edgecompress.builder.options",
    "load_model": "edgecompress.models.keras_io",
    "convert": "edgecompress.quantize.convert",
    "evaluate_tflite": "edgecompress.lite.evaluation",
    "benchmark": "edgecompress.lite.latency",
    "EdgeCompressError": "edgecompress.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgecompress' has no attribute {name!r}")
