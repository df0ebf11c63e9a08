package dev.edgecompress.demo.core

/**
 * ARGB pixels to the model's float input, as `edgecompress.preprocessing` does:
 * grayscale uses Pillow's "L" conversion, in its fixed point:
 * L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 (about 0.299 R + 0.587 G + 0.114 B),
 * then `scale` maps 0..255 to [0, 1] ("unit"), [-1, 1] ("symmetric") or keeps it ("raw").
 */
object Preprocess {
    fun toModelInput(argb: IntArray, channels: Int, scale: String): FloatArray {
        require(channels == 1 || channels == 3) { "channels must be 1 or 3. Received: channels=$channels" }
        val out = FloatArray(argb.size * channels)
        for (i in argb.indices) {
            val p = argb[i]
            val r = (p shr 16) and 0xff
            val g = (p shr 8) and 0xff
            val b = p and 0xff
            if (channels == 1) {
                out[i] = scaled(gray(r, g, b), scale)
            } else {
                out[3 * i] = scaled(r, scale)
                out[3 * i + 1] = scaled(g, scale)
                out[3 * i + 2] = scaled(b, scale)
            }
        }
        return out
    }

    fun gray(r: Int, g: Int, b: Int): Int = (r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16

    fun scaled(v: Int, scale: String): Float = when (scale) {
        "unit" -> v / 255f
        "symmetric" -> v / 127.5f - 1f
        "raw" -> v.toFloat()
        else -> throw IllegalArgumentException("Unknown scale '$scale'; expected unit, symmetric or raw")
    }
}
