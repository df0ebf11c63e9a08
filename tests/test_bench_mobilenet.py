"""The harness measures the model, not itself: MobileNetV2 int8, harness vs a bare loop."""

import time

import numpy as np
import pytest

from edgecompress.quantize import schemes
from edgecompress.lite import latency
from edgecompress.quantize import convert
from edgecompress.lite.runtime import make_interpreter

@pytest.fixture(scope="module")
def mobilenet_int8(tmp_path_factory):
    from edgecompress.models.backend import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=1000)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(4):
            yield [rng.random((1, 224, 224, 3), dtype=np.float32) * 2 - 1]

    data = convert.convert(model, schemes.int8_full(), rep)
    return convert.write_tflite(data, tmp_path_factory.mktemp("mnv2"), "mobilenet_v2_int8")


def _bare_call_ms(interp):
    """What a user would write: perf_counter around invoke(), nothing else."""
    t0 = time.perf_counter()
    interp.invoke()
    return (time.perf_counter() - t0) * 1000


@pytest.mark.slow
def test_harness_median_matches_a_bare_invoke_loop(mobilenet_int8):
    # Same interpreter, same input, and the two timing methods interleaved call by call
    # (alternating which goes first), so drift of the machine hits both alike. Comparing
    # two interpreter instances, or blocks of calls, measured the machine instead: up to
    # 11% apart, in either direction, with the harness sometimes "faster".
    from edgecompress.lite.harness import set_inputs

    interp = make_interpreter(mobilenet_int8, num_threads=1)
    set_inputs(interp)
    latency.time_invokes(interp, 10)
    harness, bare = [], []
    for i in range(120):
        if i % 2:
            harness.append(latency.time_invokes(interp, 1)[0])
            bare.append(_bare_call_ms(interp))
        else:
            bare.append(_bare_call_ms(interp))
            harness.append(latency.time_invokes(interp, 1)[0])
    h, b = float(np.median(harness)), float(np.median(bare))
    # The statistic is the median of the paired differences (call i of the harness minus call i of the bare
    # loop), not the difference of the two medians. Under load on both cores the two medians came 20-23% apart
    # in 3 of 15 runs of this comparison, while the paired median stayed within 1.8% in 60 runs (hand experiment
    # with two numpy processes hogging this 2-core machine; stop 48's CI failed on the old statistic at +6.6%).
    paired = float(np.median(np.subtract(harness, bare)))
    full = latency.benchmark(mobilenet_int8, runs=60, warmup=10, threads=1, probe=False)["latency_ms"]["p50"]
    print(f"\nMobileNetV2 int8 224x224, 1 thread, same interpreter, interleaved: harness p50 {h:.3f} ms, bare "
          f"p50 {b:.3f} ms, median paired difference {paired:+.3f} ms ({100 * paired / b:+.2f}%); benchmark() "
          f"on its own interpreter {full:.3f} ms; trivial-model overhead {latency.harness_overhead_us():.2f} us")
    # Wall-clock times measure the machine as much as the harness, so the bound is loose: 5% of a bare call is
    # about 200 us here, hundreds of times the harness's own overhead. The exact check is the next test.
    assert len(harness) == len(bare) == 120 and min(harness) > 0 and min(bare) > 0
    assert abs(paired) / b < 0.05, f"harness minus bare loop, median of 120 pairs: {paired:+.3f} ms of {b:.3f} ms"


def test_the_timed_region_holds_only_invoke(monkeypatch):
    """With a clock that only moves inside invoke(), the harness reports exactly invoke's time, call by call."""
    clock = {"ns": 0}

    class Interp:
        calls = 0

        def invoke(self):
            Interp.calls += 1
            clock["ns"] += 1_000_000 + Interp.calls  # 1 ms and a little more each call

    monkeypatch.setattr(latency.time, "perf_counter_ns", lambda: clock["ns"])
    got = latency.time_invokes(Interp(), 5)
    assert got == [(1_000_000 + i) / 1e6 for i in range(1, 6)] and Interp.calls == 5
