package dev.edgecompress.demo.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Test
import java.io.File

/** tests/vectors/numerics.json: the Python tests check the same file. */
class SharedVectorsTest {
    private val vectors: JSONObject by lazy {
        val path = System.getProperty("edgecompress.vectors") ?: "../../tests/vectors/numerics.json"
        JSONObject(File(path).readText())
    }

    private fun doubles(a: JSONArray) = DoubleArray(a.length()) { a.getDouble(it) }
    private fun ints(a: JSONArray) = IntArray(a.length()) { a.getInt(it) }
    private fun cases(key: String): List<JSONObject> =
        vectors.getJSONArray(key).let { a -> List(a.length()) { a.getJSONObject(it) } }

    @Test
    fun quantizeAndDequantize() {
        for (c in cases("quantize")) {
            val xs = doubles(c.getJSONArray("x"))
            val scale = c.getDouble("scale")
            val zp = c.getInt("zero_point")
            val q = IntArray(xs.size) { Quant.quantize(xs[it], scale, zp, c.getString("dtype")) }
            assertEquals(c.getString("name"), ints(c.getJSONArray("q")).toList(), q.toList())
            val deq = doubles(c.getJSONArray("dequantized"))
            for (j in q.indices) assertEquals(c.getString("name"), deq[j], Quant.dequantize(q[j], scale, zp), 1e-6)
        }
    }

    @Test
    fun topK() {
        for (c in cases("top_k")) {
            val got = TopK.of(doubles(c.getJSONArray("scores")), c.getInt("k")).map { it.first }
            assertEquals(c.getString("name"), ints(c.getJSONArray("indices")).toList(), got)
        }
    }

    @Test
    fun latencyStats() {
        for (c in cases("latency")) {
            val s = LatencyStats.of(doubles(c.getJSONArray("values")))
            val want = c.getJSONObject("stats")
            val got = mapOf("count" to s.count.toDouble(), "min" to s.min, "max" to s.max, "mean" to s.mean,
                "std" to s.std, "p50" to s.p50, "p90" to s.p90, "p99" to s.p99)
            for ((k, v) in got) assertEquals("${c.getString("name")}.$k", want.getDouble(k), v, 1e-9)
        }
    }

    @Test
    fun grayscaleLikePillow() {
        for (c in cases("gray")) {
            val rgb = ints(c.getJSONArray("rgb"))
            assertEquals(c.toString(), c.getInt("l"), Preprocess.gray(rgb[0], rgb[1], rgb[2]))
        }
    }
}
