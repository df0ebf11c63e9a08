package dev.edgecompress.demo

import android.os.Debug
import android.os.SystemClock
import dev.edgecompress.demo.core.BenchArgs
import dev.edgecompress.demo.core.LatencyStats
import dev.edgecompress.demo.core.Quant
import dev.edgecompress.demo.core.ResultJson
import dev.edgecompress.demo.core.TopK
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.Random

/**
 * One loaded model: picks the delegate (falling back to CPU with a note when
 * it is not supported), quantizes inputs with the tensor's own scale and zero
 * point, dequantizes outputs, and times invokes.
 */
class TfliteRunner(private val model: ByteBuffer, val name: String, val args: BenchArgs) : AutoCloseable {
    var delegateUsed: String = args.delegate.id
        private set
    var delegateNote: String? = null
        private set
    val initMs: Double
    private var delegate: Delegate? = null
    private val interpreter: Interpreter

    init {
        val t0 = SystemClock.elapsedRealtimeNanos()
        interpreter = try {
            Interpreter(model, options(args.delegate))
        } catch (e: Throwable) {
            if (args.delegate == BenchArgs.Delegate.CPU || args.delegate == BenchArgs.Delegate.XNNPACK) throw e
            closeDelegate()
            delegateNote = "${args.delegate.id} is not supported here (${e.message}); fell back to xnnpack"
            delegateUsed = BenchArgs.Delegate.XNNPACK.id
            Interpreter(model, options(BenchArgs.Delegate.XNNPACK))
        }
        initMs = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
    }

    private fun options(d: BenchArgs.Delegate): Interpreter.Options {
        val o = Interpreter.Options().setNumThreads(args.threads)
        when (d) {
            BenchArgs.Delegate.CPU -> o.setUseXNNPACK(false)
            BenchArgs.Delegate.XNNPACK -> o.setUseXNNPACK(true)
            BenchArgs.Delegate.GPU -> GpuDelegate().also { delegate = it; o.addDelegate(it) }
            BenchArgs.Delegate.NNAPI -> NnApiDelegate().also { delegate = it; o.addDelegate(it) }
        }
        return o
    }

    private fun closeDelegate() {
        (delegate as? AutoCloseable)?.close()
        delegate = null
    }

    val inputShape: IntArray get() = interpreter.getInputTensor(0).shape()
    val inputDtype: String get() = dtypeName(interpreter.getInputTensor(0).dataType())

    private fun dtypeName(t: DataType): String = when (t) {
        DataType.FLOAT32 -> "float32"
        DataType.INT8 -> "int8"
        DataType.UINT8 -> "uint8"
        DataType.INT16 -> "int16"
        else -> t.toString().lowercase()
    }

    /** How many inputs the file takes (a model of several inputs: one packed row feeds them in order). */
    val inputCount: Int get() = interpreter.inputTensorCount

    private fun inputBuffer(values: FloatArray?, index: Int, offset: Int, seed: Long): ByteBuffer {
        val tensor = interpreter.getInputTensor(index)
        val buf = ByteBuffer.allocateDirect(tensor.numBytes()).order(ByteOrder.nativeOrder())
        val n = tensor.numElements()
        val dtype = dtypeName(tensor.dataType())
        val q = tensor.quantizationParams()
        val rng = Random(seed)
        for (i in 0 until n) {
            val x = values?.get(offset + i) ?: rng.nextFloat()
            when (dtype) {
                "float32" -> buf.putFloat(x)
                "int8", "uint8" -> buf.put(Quant.quantize(x.toDouble(), q.scale.toDouble(), q.zeroPoint, dtype).toByte())
                "int16" -> buf.putShort(Quant.quantize(x.toDouble(), q.scale.toDouble(), q.zeroPoint, dtype).toShort())
                "int32" -> buf.putInt((x * 100).toInt()) // ids or counts: small non-negative integers
                else -> throw IllegalStateException("Unsupported input type $dtype")
            }
        }
        buf.rewind()
        return buf
    }

    /** One buffer per input: `values` is one packed row (each input's numbers after the one before, as
     *  edgecompress packs them), or null for random inputs (input i seeded with i). */
    private fun inputBuffers(values: FloatArray?): Array<Any> {
        var offset = 0
        return Array(inputCount) { i ->
            inputBuffer(values, i, offset, i.toLong()).also { offset += interpreter.getInputTensor(i).numElements() }
        }
    }

    private fun run(inputs: Array<Any>, out: ByteBuffer) {
        if (inputs.size == 1) interpreter.run(inputs[0], out)
        else interpreter.runForMultipleInputsOutputs(inputs, mapOf<Int, Any>(0 to out))
    }

    /** Scores for one preprocessed input (float, length = input elements; for several inputs, all of them). */
    fun classify(input: FloatArray): FloatArray {
        val out = interpreter.getOutputTensor(0)
        val outBuf = ByteBuffer.allocateDirect(out.numBytes()).order(ByteOrder.nativeOrder())
        run(inputBuffers(input), outBuf)
        outBuf.rewind()
        val dtype = dtypeName(out.dataType())
        val q = out.quantizationParams()
        return FloatArray(out.numElements()) {
            when (dtype) {
                "float32" -> outBuf.float
                "int8" -> Quant.dequantize(outBuf.get().toInt(), q.scale.toDouble(), q.zeroPoint).toFloat()
                "uint8" -> Quant.dequantize(outBuf.get().toInt() and 0xff, q.scale.toDouble(), q.zeroPoint).toFloat()
                else -> throw IllegalStateException("Unsupported output type $dtype")
            }
        }
    }

    fun top3(input: FloatArray): List<Pair<Int, Double>> = TopK.of(classify(input), 3)

    /** warm-up then timed invokes on a random input, like `python -m edgecompress.bench`. */
    fun benchmark(sizeBytes: Long): ResultJson.Result {
        val inputs = inputBuffers(null)
        val out = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder())
        fun once(): Double {
            for (b in inputs) (b as ByteBuffer).rewind()
            out.rewind()
            val t0 = SystemClock.elapsedRealtimeNanos()
            run(inputs, out)
            return (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
        }
        val first = once()
        val warm = DoubleArray(args.warmup) { once() }
        val timed = DoubleArray(args.runs) { once() }
        return ResultJson.Result(
            model = name, sizeBytes = sizeBytes, args = args, delegateUsed = delegateUsed, delegateNote = delegateNote,
            inputShape = inputShape, inputDtype = inputDtype, initMs = initMs, firstInferenceMs = first,
            warmupMeanMs = if (warm.isEmpty()) null else warm.average(), latency = LatencyStats.of(timed),
            nativeHeapMb = Debug.getNativeHeapAllocatedSize() / 1048576.0,
        )
    }

    override fun close() {
        interpreter.close()
        closeDelegate()
    }
}
