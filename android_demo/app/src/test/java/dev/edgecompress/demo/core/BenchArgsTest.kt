package dev.edgecompress.demo.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertThrows
import org.junit.Assert.assertTrue
import org.junit.Test

class BenchArgsTest {
    @Test
    fun defaults() {
        val a = BenchArgs.parse(mapOf("model" to "int8.tflite"))
        assertEquals(BenchArgs("int8.tflite", 1, 200, 20, BenchArgs.Delegate.XNNPACK), a)
    }

    @Test
    fun intentExtrasAsIntsOrStrings() {
        val a = BenchArgs.parse(mapOf("model" to "m.tflite", "threads" to 4, "runs" to "50", "warmup" to 0, "delegate" to "GPU"))
        assertEquals(4, a.threads); assertEquals(50, a.runs); assertEquals(0, a.warmup)
        assertEquals(BenchArgs.Delegate.GPU, a.delegate)
    }

    @Test
    fun hostileButValidNamesPassThrough() {
        assertEquals("it's a \"model\"; x.tflite", BenchArgs.parse(mapOf("model" to "it's a \"model\"; x.tflite")).model)
    }

    @Test
    fun errorsNameTheArgument() {
        fun msg(extras: Map<String, Any?>) = assertThrows(IllegalArgumentException::class.java) { BenchArgs.parse(extras) }.message!!
        assertTrue(msg(emptyMap()).contains("Missing `model`"))
        assertTrue(msg(mapOf("model" to "../x.tflite")).contains("model=../x.tflite"))
        assertTrue(msg(mapOf("model" to "m", "threads" to 0)).contains("threads=0"))
        assertTrue(msg(mapOf("model" to "m", "runs" to "many")).contains("runs=many"))
        assertTrue(msg(mapOf("model" to "m", "delegate" to "tpu")).contains("delegate=tpu"))
    }
}
