package dev.edgecompress.demo.core

import kotlin.math.abs
import kotlin.math.floor
import kotlin.math.sign

/**
 * int8/uint8 quantization with a tensor's own scale and zero point.
 *
 * Same definition as `edgecompress.numerics` in Python, held to the same
 * answers by the shared vectors in tests/vectors/numerics.json:
 * q = clamp(round_half_away_from_zero(x / scale) + zeroPoint).
 */
object Quant {
    fun range(dtype: String): IntRange = when (dtype) {
        "int8" -> -128..127
        "uint8" -> 0..255
        "int16" -> -32768..32767
        else -> throw IllegalArgumentException("Unsupported quantized dtype '$dtype'; expected int8, uint8 or int16")
    }

    fun quantize(x: Double, scale: Double, zeroPoint: Int, dtype: String): Int {
        require(scale > 0) { "Quantization scale must be positive. Received: scale=$scale" }
        val v = x / scale
        val rounded = sign(v) * floor(abs(v) + 0.5)
        val r = range(dtype)
        return (rounded + zeroPoint).coerceIn(r.first.toDouble(), r.last.toDouble()).toInt()
    }

    fun quantize(xs: FloatArray, scale: Double, zeroPoint: Int, dtype: String): IntArray =
        IntArray(xs.size) { quantize(xs[it].toDouble(), scale, zeroPoint, dtype) }

    fun dequantize(q: Int, scale: Double, zeroPoint: Int): Double = (q - zeroPoint) * scale

    fun dequantize(qs: IntArray, scale: Double, zeroPoint: Int): FloatArray =
        FloatArray(qs.size) { dequantize(qs[it], scale, zeroPoint).toFloat() }
}
