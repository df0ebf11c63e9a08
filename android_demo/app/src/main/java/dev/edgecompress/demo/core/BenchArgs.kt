package dev.edgecompress.demo.core

/**
 * The headless benchmark's intent arguments:
 * `adb shell am start -n dev.edgecompress.demo/.MainActivity --es model NAME
 *  --ei threads N --ei runs N --ei warmup N --es delegate cpu|xnnpack|gpu|nnapi`.
 */
data class BenchArgs(
    val model: String,
    val threads: Int = 1,
    val runs: Int = 200,
    val warmup: Int = 20,
    val delegate: Delegate = Delegate.XNNPACK,
) {
    enum class Delegate(val id: String) {
        CPU("cpu"), XNNPACK("xnnpack"), GPU("gpu"), NNAPI("nnapi");

        companion object {
            fun parse(value: String): Delegate = entries.firstOrNull { it.id == value.lowercase() }
                ?: throw IllegalArgumentException(
                    "Received an invalid value for `delegate`, expected one of ${entries.map { it.id }}. Received: delegate=$value"
                )
        }
    }

    companion object {
        /** Parses intent extras (as a plain map, so it is testable off the phone). */
        fun parse(extras: Map<String, Any?>): BenchArgs {
            val model = extras["model"] as? String
                ?: throw IllegalArgumentException("Missing `model`: pass --es model NAME (a .tflite in the app's models)")
            require(model.isNotBlank() && !model.contains('/') && model != "." && model != "..") {
                "Received an invalid value for `model`, expected a file name without '/'. Received: model=$model"
            }
            fun int(key: String, default: Int, min: Int): Int {
                val raw = extras[key] ?: return default
                val v = when (raw) {
                    is Int -> raw
                    is String -> raw.toIntOrNull()
                    else -> null
                } ?: throw IllegalArgumentException("Received an invalid value for `$key`, expected an integer. Received: $key=$raw")
                require(v >= min) { "Received an invalid value for `$key`, expected an integer >= $min. Received: $key=$v" }
                return v
            }
            return BenchArgs(
                model = model,
                threads = int("threads", 1, 1),
                runs = int("runs", 200, 1),
                warmup = int("warmup", 20, 0),
                delegate = (extras["delegate"] as? String)?.let { Delegate.parse(it) } ?: Delegate.XNNPACK,
            )
        }
    }
}
