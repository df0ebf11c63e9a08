"""The shared vectors in tests/vectors/numerics.json; the Android app's JVM tests check the same file."""

import json

import numpy as np
import pytest

from edgecompress.lite.numerics import dequantize, latency_stats, percentile, quantize, top_k

VECTORS = json.loads((__import__("pathlib").Path(__file__).parent / "vectors" / "numerics.json").read_text())


@pytest.mark.parametrize("case", VECTORS["quantize"], ids=lambda c: c["name"])
def test_quantize_vectors(case):
    q = quantize(np.array(case["x"]), case["scale"], case["zero_point"], case["dtype"])
    assert q.tolist() == case["q"]
    assert np.allclose(dequantize(q, case["scale"], case["zero_point"]), case["dequantized"], atol=1e-6)


@pytest.mark.parametrize("case", VECTORS["top_k"], ids=lambda c: c["name"])
def test_top_k_vectors(case):
    assert [i for i, _ in top_k(case["scores"], case["k"])] == case["indices"]


@pytest.mark.parametrize("case", VECTORS["latency"], ids=lambda c: c["name"])
def test_latency_vectors(case):
    stats = latency_stats(case["values"])
    for key, want in case["stats"].items():
        assert stats[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key


def test_percentile_matches_numpy():
    v = np.random.default_rng(0).random(101)
    for p in (0, 50, 90, 99, 100):
        assert percentile(v, p) == pytest.approx(np.percentile(v, p))


def test_bad_scale():
    with pytest.raises(ValueError, match="scale must be positive"):
        quantize([1.0], 0.0, 0)


@pytest.mark.parametrize("case", VECTORS["gray"], ids=lambda c: str(c["rgb"]))
def test_gray_vectors_are_pillows(case):
    from PIL import Image

    img = Image.fromarray(np.array([[case["rgb"]]], np.uint8), "RGB").convert("L")
    assert int(np.asarray(img)[0, 0]) == case["l"]
