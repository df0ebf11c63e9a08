package dev.edgecompress.demo.core

/**
 * The benchmark result as JSON, with the same fields as
 * `python -m edgecompress.bench` (one result per file), so
 * `invoke bench-android` merges it into the report like a Raspberry Pi's.
 */
object ResultJson {
    data class Device(val model: String, val os: String, val abi: String, val hardware: String, val runtimeVersion: String)

    data class Result(
        val model: String,
        val sizeBytes: Long,
        val args: BenchArgs,
        val delegateUsed: String,
        val delegateNote: String?,
        val inputShape: IntArray,
        val inputDtype: String,
        val initMs: Double,
        val firstInferenceMs: Double,
        val warmupMeanMs: Double?,
        val latency: LatencyStats,
        val nativeHeapMb: Double,
    )

    fun quote(s: String): String {
        val sb = StringBuilder("\"")
        for (ch in s) {
            when {
                ch == '"' -> sb.append("\\\"")
                ch == '\\' -> sb.append("\\\\")
                ch == '\n' -> sb.append("\\n")
                ch == '\r' -> sb.append("\\r")
                ch == '\t' -> sb.append("\\t")
                ch.code < 0x20 -> sb.append(String.format("\\u%04x", ch.code))
                else -> sb.append(ch)
            }
        }
        return sb.append('"').toString()
    }

    private fun num(x: Double?): String = when {
        x == null || x.isNaN() || x.isInfinite() -> "null"
        else -> x.toString()
    }

    fun latency(s: LatencyStats): String =
        "{\"count\": ${s.count}, \"min\": ${num(s.min)}, \"max\": ${num(s.max)}, \"mean\": ${num(s.mean)}, " +
            "\"std\": ${num(s.std)}, \"p50\": ${num(s.p50)}, \"p90\": ${num(s.p90)}, \"p99\": ${num(s.p99)}}"

    fun result(r: Result, runtimeVersion: String): String =
        "{\"model\": ${quote(r.model)}, \"size_bytes\": ${r.sizeBytes}, " +
            "\"runtime\": {\"name\": \"tflite-android\", \"version\": ${quote(runtimeVersion)}}, " +
            "\"threads\": ${r.args.threads}, \"xnnpack\": ${r.delegateUsed == "xnnpack"}, " +
            "\"delegate\": ${quote(r.delegateUsed)}, \"delegate_requested\": ${quote(r.args.delegate.id)}, " +
            "\"delegate_note\": ${r.delegateNote?.let { quote(it) } ?: "null"}, " +
            "\"input\": {\"shape\": [${r.inputShape.joinToString(", ")}], \"dtype\": ${quote(r.inputDtype)}, \"source\": \"random\"}, " +
            "\"init_ms\": ${num(r.initMs)}, \"first_inference_ms\": ${num(r.firstInferenceMs)}, " +
            "\"warmup\": {\"count\": ${r.args.warmup}, \"mean_ms\": ${num(r.warmupMeanMs)}}, " +
            "\"latency_ms\": ${latency(r.latency)}, \"memory_mb\": {\"native_heap\": ${num(r.nativeHeapMb)}}}"

    /** The envelope `python -m edgecompress.bench --json` writes: device, overhead, results, errors. */
    fun envelope(device: Device, overheadUs: Double?, results: List<Result>, errors: Map<String, String>): String =
        "{\"schema_version\": 1, \"device\": {\"hostname\": ${quote(device.model)}, \"os\": ${quote(device.os)}, " +
            "\"machine\": ${quote(device.abi)}, \"cpu\": ${quote(device.hardware)}, \"board\": ${quote(device.model)}, " +
            "\"python\": null, \"numpy\": null, " +
            "\"runtime\": {\"name\": \"tflite-android\", \"version\": ${quote(device.runtimeVersion)}}, " +
            "\"tensorflow_imported\": false}, \"harness_overhead_us\": ${num(overheadUs)}, " +
            "\"results\": [${results.joinToString(", ") { result(it, device.runtimeVersion) }}], " +
            "\"errors\": [${errors.entries.joinToString(", ") { "{\"model\": ${quote(it.key)}, \"error\": ${quote(it.value)}}" }}]}"
}
