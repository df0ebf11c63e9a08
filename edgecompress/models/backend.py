"""The one place TensorFlow is imported.

tensorflow-model-optimization only works with Keras 2, so
`TF_USE_LEGACY_KERAS=1` must be set before TensorFlow is first imported;
doing it here means users never have to know. Modules that must run on a
device (`runtime`, `bench`, `evaluation`, `preprocessing`) never import this.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

if os.environ.get("EDGECOMPRESS_TF_THREADS"):  # a search worker's share of the cores (`search.worker.run_local_workers`)
    _n = int(os.environ["EDGECOMPRESS_TF_THREADS"])
    tf.config.threading.set_intra_op_parallelism_threads(_n)
    tf.config.threading.set_inter_op_parallelism_threads(_n)

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":  # pragma: no cover
    import warnings

    warnings.warn(
        "TF_USE_LEGACY_KERAS is not '1'; tensorflow-model-optimization needs Keras 2 "
        "(tf_keras). Unset it or set it to 1.",
        stacklevel=2,
    )

__all__ = ["tf", "keras", "fit_verbose"]


def fit_verbose(verbose: int) -> int:
    """Keras' `verbose` for `fit()`: its progress bar on a terminal, one line per epoch when the output is a
    file or a pipe (a log read later is not flooded with "ETA:" frames); 0 stays 0."""
    import sys

    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2
