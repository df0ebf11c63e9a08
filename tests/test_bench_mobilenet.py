"""The harness measures the model, not itself: MobileNetV2 int8, harness vs a bare loop."""

import time

import numpy as np
import pytest

from edgecompress import bench, configs, quantization
from edgecompress.runtime import make_interpreter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mobilenet_int8(tmp_path_factory):
    from edgecompress._tf import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.random((1, 224, 224, 3), dtype=np.float32) * 2 - 1]

    data = quantization.convert(model, configs.int8_full(), rep)
    return quantization.write_tflite(data, tmp_path_factory.mktemp("mnv2"), "mobilenet_v2_int8")


def _bare_median_ms(path, runs):
    interp = make_interpreter(path, num_threads=1)
    d = interp.get_input_details()[0]
    interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(10):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def test_harness_median_matches_a_bare_invoke_loop(mobilenet_int8):
    runs = 60
    # Interleave to share the machine's state; compare the medians of each method.
    h1 = bench.benchmark(mobilenet_int8, runs=runs, warmup=10, threads=1, probe=False)["latency_ms"]["p50"]
    b1 = _bare_median_ms(mobilenet_int8, runs)
    h2 = bench.benchmark(mobilenet_int8, runs=runs, warmup=10, threads=1, probe=False)["latency_ms"]["p50"]
    b2 = _bare_median_ms(mobilenet_int8, runs)
    harness, bare = np.median([h1, h2]), np.median([b1, b2])
    print(f"\nMobileNetV2 int8 224x224, 1 thread: harness p50 {harness:.3f} ms, bare loop p50 {bare:.3f} ms, "
          f"diff {100 * (harness - bare) / bare:+.2f}%; trivial-model overhead {bench.harness_overhead_us():.2f} us")
    assert abs(harness - bare) / bare <= 0.05
