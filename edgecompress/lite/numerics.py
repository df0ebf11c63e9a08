"""The arithmetic shared by every runtime: int8 quantization, top-k, percentiles.

Kept tiny and dependency-free (numpy only) because the Android app
implements the same functions in Kotlin, and shared test vectors
(`tests/vectors/numerics.json`) hold both to the same answers.
"""

from __future__ import annotations

import numpy as np

_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}


def quantize(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """q = clamp(round_half_away_from_zero(x / scale) + zero_point)."""
    dtype = np.dtype(dtype)
    lo, hi = _RANGES[dtype]
    if not scale > 0:
        raise ValueError(f"Quantization scale must be positive. Received: scale={scale!r}")
    v = np.asarray(x, np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def labels(scores) -> np.ndarray:
    """Predicted class ids of (N, C) scores: the argmax, or for one sigmoid unit (C == 1) whether it is
    above 0.5 (class 1). Probabilities and logits give the same argmax, so the head needs no flag here."""
    scores = np.asarray(scores)
    if scores.ndim == 2 and scores.shape[1] == 1:
        return (scores[:, 0] > 0.5).astype(np.int64)
    return scores.argmax(-1)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """x = (q - zero_point) * scale, as float32."""
    return ((np.asarray(q, np.float64) - zero_point) * scale).astype(np.float32)


def top_k(scores, k: int) -> list[tuple[int, float]]:
    """The k highest (index, score) pairs, ties broken by the lower index."""
    s = np.asarray(scores, np.float64).ravel()
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))[:k]
    return [(int(i), float(s[i])) for i in order]


def percentile(values, p: float) -> float:
    """Linear-interpolation percentile (numpy's default method), p in [0, 100]."""
    v = np.sort(np.asarray(values, np.float64))
    if len(v) == 0:
        raise ValueError("percentile of an empty sequence")
    return float(np.percentile(v, p))


def latency_stats(values_ms) -> dict:
    """min, max, mean, std (population), p50, p90, p99 of latencies in ms."""
    v = np.asarray(values_ms, np.float64)
    return {
        "count": int(len(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "p50": percentile(v, 50),
        "p90": percentile(v, 90),
        "p99": percentile(v, 99),
    }
