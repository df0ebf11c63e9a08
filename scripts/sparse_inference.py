"""Does XNNPACK run a pruned float model faster when the file stores its zeros as sparse tensors?

    python scripts/sparse_inference.py build/mnv3-latency/.cache/stage1-prune-*.keras
    python -m edgecompress.lite.latency /tmp/pruned-*.tflite --runs 2000

Converts each pruned tf-keras model twice, float32 dense and with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY`
(sparse weights and DENSIFY ops), writes /tmp/pruned-<key>-{dense,sparse}.tflite and prints each file's bytes,
measured sparsity and commonest ops; time them with the latency harness. The README's latency section quotes
one run: XNNPACK densifies the weights when it loads the file, so the sparse file is smaller, not faster.
"""

import sys
from collections import Counter
from pathlib import Path

from edgecompress.lite.reader import ops, weight_sparsity
from edgecompress.models.backend import tf
from edgecompress.models.keras_io import load_model

if __name__ == "__main__":
    for f in sys.argv[1:]:
        m = load_model(f)
        for name, opts in (("dense", []), ("sparse", [tf.lite.Optimize.EXPERIMENTAL_SPARSITY])):
            c = tf.lite.TFLiteConverter.from_keras_model(m)
            c.optimizations = opts
            data = c.convert()
            out = Path(f"/tmp/pruned-{Path(f).stem.split('-')[-1][:6]}-{name}.tflite")
            out.write_bytes(data)
            print(out, len(data), f"sparsity {weight_sparsity(data)['overall']:.3f}",
                  Counter(o["op"] for o in ops(data)).most_common(4))
