"""edgecompress: compress Keras models and ship them as `.tflite` to phones and boards.

The public API is small and imported lazily, so that the device-side modules
(`edgecompress.runtime`, `edgecompress.bench`, `edgecompress.evaluation`)
never pull in TensorFlow:

>>> import edgecompress as ec
>>> report = ec.build_edge(ec.BuildOptions(epochs=2))
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BuildOptions": "edgecompress.pipeline",
    "build_edge": "edgecompress.pipeline",
    "Preprocessing": "edgecompress.configs",
    "TrainConfig": "edgecompress.configs",
    "ConversionConfig": "edgecompress.configs",
    "ModelSpec": "edgecompress.configs",
    "Quantization": "edgecompress.configs",
    "Recipe": "edgecompress.recipe",
    "load_recipe": "edgecompress.recipe",
    "load_dataset": "edgecompress.data",
    "load_model": "edgecompress.models",
    "convert": "edgecompress.quantization",
    "evaluate_tflite": "edgecompress.evaluation",
    "benchmark": "edgecompress.bench",
    "EdgeCompressError": "edgecompress.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edgecompress' has no attribute {name!r}")
