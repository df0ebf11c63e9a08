package dev.edgecompress.demo.core

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Test

class ResultJsonTest {
    private val result = ResultJson.Result(
        model = "it's \"q\"\n.tflite", sizeBytes = 1234, args = BenchArgs("m", 2, 3, 1, BenchArgs.Delegate.GPU),
        delegateUsed = "xnnpack", delegateNote = "gpu is not supported here", inputShape = intArrayOf(1, 28, 28, 1),
        inputDtype = "int8", initMs = 1.5, firstInferenceMs = 0.5, warmupMeanMs = null,
        latency = LatencyStats.of(doubleArrayOf(1.0, 2.0, 3.0)), nativeHeapMb = Double.NaN,
    )

    @Test
    fun sameFieldsAsThePythonBenchmark() {
        val env = JSONObject(ResultJson.envelope(ResultJson.Device("Pixel 8", "Android 14", "arm64-v8a", "zuma", "2.16.1"),
            0.8, listOf(result), mapOf("bad.tflite" to "Cannot load")))
        assertEquals(setOf("schema_version", "device", "harness_overhead_us", "results", "errors"), env.keySet())
        val r = env.getJSONArray("results").getJSONObject(0)
        for (k in listOf("model", "size_bytes", "runtime", "threads", "xnnpack", "input", "init_ms", "first_inference_ms",
            "warmup", "latency_ms", "memory_mb")) {
            assert(r.has(k)) { "missing $k" }
        }
        assertEquals("it's \"q\"\n.tflite", r.getString("model"))
        assertEquals(2.0, r.getJSONObject("latency_ms").getDouble("p50"), 0.0)
        assertEquals("xnnpack", r.getString("delegate"))
        assertEquals("gpu", r.getString("delegate_requested"))
        assertFalse(env.getJSONObject("device").getBoolean("tensorflow_imported"))
        assertEquals("bad.tflite", env.getJSONArray("errors").getJSONObject(0).getString("model"))
        assert(r.getJSONObject("warmup").isNull("mean_ms"))
    }
}
