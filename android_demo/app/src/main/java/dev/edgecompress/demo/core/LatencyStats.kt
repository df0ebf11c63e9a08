package dev.edgecompress.demo.core

import kotlin.math.floor
import kotlin.math.min
import kotlin.math.sqrt

/**
 * min, max, mean, std (population), p50, p90, p99 of latencies in ms.
 *
 * Percentiles interpolate linearly between closest ranks, numpy's default,
 * so the phone and `python -m edgecompress.bench` agree on the same data.
 */
data class LatencyStats(
    val count: Int,
    val min: Double,
    val max: Double,
    val mean: Double,
    val std: Double,
    val p50: Double,
    val p90: Double,
    val p99: Double,
) {
    companion object {
        fun percentile(values: DoubleArray, p: Double): Double {
            require(values.isNotEmpty()) { "percentile of an empty sequence" }
            val v = values.sortedArray()
            val k = (v.size - 1) * p / 100.0
            val f = floor(k).toInt()
            val c = min(f + 1, v.size - 1)
            return v[f] + (v[c] - v[f]) * (k - f)
        }

        fun of(valuesMs: DoubleArray): LatencyStats {
            require(valuesMs.isNotEmpty()) { "no latencies to summarize" }
            val mean = valuesMs.average()
            val variance = valuesMs.sumOf { (it - mean) * (it - mean) } / valuesMs.size
            return LatencyStats(
                count = valuesMs.size,
                min = valuesMs.min(),
                max = valuesMs.max(),
                mean = mean,
                std = sqrt(variance),
                p50 = percentile(valuesMs, 50.0),
                p90 = percentile(valuesMs, 90.0),
                p99 = percentile(valuesMs, 99.0),
            )
        }
    }
}
