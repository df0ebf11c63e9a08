"""How long `quantize/rewrites.converter_of` takes to convert, against the same converter given the Keras model
as its trackable (what it did before): the converter saves that trackable as a SavedModel first, and a Keras
model's save traces every layer. Keras 3 transfer models (tests/support/architectures.py, 32x32, untrained),
float32 and int8 (8 seeded random calibration inputs); each file's bytes compared.

    python scripts/conversion_time.py
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def main():
    import keras as k3

    from edgecompress.models.backend import tf
    from edgecompress.models.translate import to_tf_keras
    from edgecompress.quantize.rewrites import converter_of
    from tests.support.architectures import transfer_model

    def keras_trackable(model):
        @tf.autograph.experimental.do_not_convert
        def call(x):
            return model(x, training=False)

        spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
        return tf.lite.TFLiteConverter.from_concrete_functions([tf.function(call).get_concrete_function(spec)], model)

    print("| model | file | Keras model as trackable | its variables (converter_of) | bytes | identical |")
    print("|---|---|---|---|---|---|")
    for arch in ("resnet", "mobilenet_v3_small", "efficientnet_b0"):
        model = to_tf_keras(transfer_model(k3, arch, logits=False))
        for scheme in ("float32", "int8"):
            out, secs = [], []
            for make in (keras_trackable, converter_of):
                c = make(model)
                if scheme == "int8":
                    rng = np.random.default_rng(0)
                    c.optimizations = [tf.lite.Optimize.DEFAULT]
                    c.representative_dataset = lambda: (
                        [rng.uniform(0, 255, (1, *model.input_shape[1:])).astype("float32")] for _ in range(8))
                t0 = time.perf_counter()
                out.append(c.convert())
                secs.append(time.perf_counter() - t0)
            print(f"| {arch} | {scheme} | {secs[0]:.1f} s | {secs[1]:.1f} s | {len(out[1]):,} | {out[0] == out[1]} |",
                  flush=True)


if __name__ == "__main__":
    main()
