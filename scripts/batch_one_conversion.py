"""What converting at batch size 1 (`quantize/rewrites.converter_of`) changes, against the Keras model's own
converter (batch left open), on a Keras 3 EfficientNetB0 (64x64, `weights=None`, 10 classes, translated):

    python scripts/batch_one_conversion.py          # the README's latency section quotes one run

For float32 and int8 (calibrated on 32 seeded random images) it prints each file's bytes, XNNPACK partitions,
the ops left outside, whether its outputs on those images equal the other conversion's, and p50 of 1,000
invokes (50 warm-up, 1 thread) three times, interleaved. A latency is this CPU's, at that hour.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from edgecompress.lite.evaluation import predict  # noqa: E402
from edgecompress.lite.latency import benchmark, delegation  # noqa: E402
from edgecompress.lite.runtime import make_interpreter  # noqa: E402
from edgecompress.models.backend import tf  # noqa: E402
from edgecompress.models.translate import to_tf_keras  # noqa: E402
from edgecompress.quantize.rewrites import converter_of  # noqa: E402


def outputs(data, x):
    interp = make_interpreter(model_content=data, num_threads=1)
    return predict(interp, x), delegation(interp)


if __name__ == "__main__":
    from pathlib import Path

    keras.utils.set_random_seed(0)
    model = to_tf_keras(keras.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=10))
    x = np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype("float32")
    out = Path("/tmp/batch-one")
    out.mkdir(exist_ok=True)
    files = {}
    for scheme in ("float32", "int8"):
        got = {}
        for how, make in (("open-batch", tf.lite.TFLiteConverter.from_keras_model), ("batch-1", converter_of)):
            c = make(model)
            if scheme == "int8":
                c.optimizations = [tf.lite.Optimize.DEFAULT]
                c.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
            data = c.convert()
            files[f"{scheme}-{how}"] = out / f"{scheme}-{how}.tflite"
            files[f"{scheme}-{how}"].write_bytes(data)
            got[how], d = outputs(data, x)
            print(f"{scheme} {how}: {len(data):,} bytes, {d['partitions']} partitions, outside {d['outside']}")
        print(f"{scheme}: outputs identical: {bool(np.array_equal(got['open-batch'], got['batch-1']))}")
    times = {name: [] for name in files}
    for _ in range(3):
        for name, path in files.items():
            times[name].append(benchmark(path, runs=1000, warmup=50, probe=False)["latency_ms"]["p50"])
    for name, t in times.items():
        print(f"{name}: p50 ms {', '.join(f'{v:.3f}' for v in t)}")
