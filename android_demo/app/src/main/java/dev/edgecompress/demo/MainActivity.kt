package dev.edgecompress.demo

import android.app.Activity
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.Build
import android.os.Bundle
import android.util.Log
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.Spinner
import android.widget.TextView
import dev.edgecompress.demo.core.BenchArgs
import dev.edgecompress.demo.core.Preprocess
import dev.edgecompress.demo.core.ResultJson
import org.json.JSONObject
import org.tensorflow.lite.TensorFlowLite
import java.io.File
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/**
 * Pick a model and a sample image, see the top-3 labels and latency; or,
 * started with `--es model NAME`, run the benchmark headless, write the JSON
 * to the app's external files directory (`bench/NAME.json`) and log
 * `EDGECOMPRESS_BENCH_DONE` (or `EDGECOMPRESS_BENCH_FAILED`).
 *
 * Views are built in code (no XML layouts, no AndroidX).
 */
class MainActivity : Activity() {
    companion object {
        const val TAG = "EdgeCompressBench"
    }

    private lateinit var output: TextView
    private lateinit var image: ImageView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val extras = intent?.extras
        if (extras != null && extras.containsKey("model")) {
            val map = extras.keySet().associateWith { key ->
                @Suppress("DEPRECATION")
                extras.get(key)
            }
            Thread { headless(map) }.start()
            return
        }
        buildUi()
    }

    // ---- model and asset access ----

    /** Models pushed by `invoke bench-android` (external files) win over the bundled assets. */
    private fun pushedModels(): File = File(getExternalFilesDir(null), "models")

    private fun modelNames(): List<String> {
        val pushed = pushedModels().listFiles()?.filter { it.name.endsWith(".tflite") }?.map { it.name } ?: emptyList()
        val bundled = assets.list("models")?.filter { it.endsWith(".tflite") } ?: emptyList()
        return (pushed + bundled).distinct().sorted()
    }

    private fun loadModel(name: String): Pair<ByteBuffer, Long> {
        val pushed = File(pushedModels(), name)
        if (pushed.isFile) {
            FileInputStream(pushed).channel.use { ch ->
                return ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size()) to ch.size()
            }
        }
        val fd = assets.openFd("models/$name") // requires noCompress "tflite"
        FileInputStream(fd.fileDescriptor).channel.use { ch ->
            return ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength) to fd.declaredLength
        }
    }

    private fun spec(): JSONObject? = try {
        JSONObject(assets.open("model_spec.json").bufferedReader().use { it.readText() })
    } catch (e: Exception) {
        null
    }

    private fun runtimeVersion(): String = try {
        TensorFlowLite.runtimeVersion()
    } catch (e: Throwable) {
        "unknown"
    }

    private fun device() = ResultJson.Device(
        model = "${Build.MANUFACTURER} ${Build.MODEL}", os = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
        abi = Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown", hardware = Build.HARDWARE, runtimeVersion = runtimeVersion(),
    )

    /** Per-call overhead of the timing loop on the bundled one-op model, in microseconds. */
    private fun overheadUs(args: BenchArgs): Double? = try {
        val fd = assets.openFd("trivial.tflite")
        val buf = FileInputStream(fd.fileDescriptor).channel.use { it.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength) }
        TfliteRunner(buf, "trivial.tflite", args.copy(runs = 2000, warmup = 100, delegate = BenchArgs.Delegate.XNNPACK))
            .use { it.benchmark(fd.declaredLength).latency.p50 * 1000.0 }
    } catch (e: Exception) {
        null
    }

    // ---- headless benchmark ----

    private fun headless(extras: Map<String, Any?>) {
        val name = extras["model"]?.toString() ?: "?"
        val outDir = File(getExternalFilesDir(null), "bench").apply { mkdirs() }
        val outFile = File(outDir, "$name.json")
        try {
            val args = BenchArgs.parse(extras)
            val (buf, size) = loadModel(args.model)
            val result = TfliteRunner(buf, args.model, args).use { it.benchmark(size) }
            outFile.writeText(ResultJson.envelope(device(), overheadUs(args), listOf(result), emptyMap()))
            Log.i(TAG, "EDGECOMPRESS_BENCH_DONE model=$name path=${outFile.absolutePath}")
        } catch (e: Throwable) {
            outFile.writeText(ResultJson.envelope(device(), null, emptyList(), mapOf(name to (e.message ?: e.toString()))))
            Log.e(TAG, "EDGECOMPRESS_BENCH_FAILED model=$name error=${e.message}")
        }
        runOnUiThread { finish() }
    }

    // ---- interactive UI ----

    private fun buildUi() {
        val pad = (16 * resources.displayMetrics.density).toInt()
        val root = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL; setPadding(pad, pad, pad, pad) }
        val models = Spinner(this).apply { adapter = ArrayAdapter(context, android.R.layout.simple_spinner_dropdown_item, modelNames()) }
        val samples = assets.list("samples")?.sorted() ?: emptyList()
        val images = Spinner(this).apply { adapter = ArrayAdapter(context, android.R.layout.simple_spinner_dropdown_item, samples) }
        val delegates = Spinner(this).apply {
            adapter = ArrayAdapter(context, android.R.layout.simple_spinner_dropdown_item, BenchArgs.Delegate.entries.map { it.id })
            setSelection(BenchArgs.Delegate.XNNPACK.ordinal)
        }
        val threads = EditText(this).apply { setText("1"); hint = "threads" }
        val runs = EditText(this).apply { setText("100"); hint = "runs" }
        image = ImageView(this).apply { minimumHeight = pad * 8; adjustViewBounds = true }
        output = TextView(this).apply { setTextIsSelectable(true) }
        val run = Button(this).apply { text = "Run" }
        for ((label, v) in listOf("Model" to models, "Image" to images, "Delegate" to delegates, "Threads" to threads, "Runs" to runs)) {
            root.addView(TextView(this).apply { text = label })
            root.addView(v)
        }
        root.addView(image)
        root.addView(run)
        root.addView(output)
        images.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(p: AdapterView<*>?, v: View?, pos: Int, id: Long) {
                image.setImageBitmap(sample(samples[pos]))
            }
            override fun onNothingSelected(p: AdapterView<*>?) {}
        }
        run.setOnClickListener {
            val model = models.selectedItem as? String ?: return@setOnClickListener show("No models: run `invoke android-assets` first.")
            val img = images.selectedItem as? String
            val extras = mapOf("model" to model, "threads" to threads.text.toString(), "runs" to runs.text.toString(),
                "warmup" to "10", "delegate" to delegates.selectedItem as String)
            show("Running $model ...")
            Thread { interactive(extras, img) }.start()
        }
        setContentView(ScrollView(this).apply { addView(root) })
    }

    private fun sample(name: String): Bitmap? = try {
        assets.open("samples/$name").use { BitmapFactory.decodeStream(it) }
    } catch (e: Exception) {
        null
    }

    private fun interactive(extras: Map<String, Any?>, img: String?) {
        val text = try {
            val args = BenchArgs.parse(extras)
            val (buf, size) = loadModel(args.model)
            TfliteRunner(buf, args.model, args).use { runner ->
                val sb = StringBuilder()
                runner.delegateNote?.let { sb.append("Note: ").append(it).append("\n\n") }
                val spec = spec()
                val features = spec?.getJSONObject("preprocessing")?.optString("kind") == "features"
                if (features) {
                    // Not an image model: no picture to feed; the benchmark below runs on random inputs.
                    val more = if (runner.inputCount > 1) " and ${runner.inputCount - 1} more input(s)" else ""
                    sb.append("Feature model (input ${runner.inputShape.joinToString("x")} ${runner.inputDtype}$more): ")
                        .append("timed on random inputs; accuracy comes from `invoke bench-device --accuracy`.\n")
                } else if (img != null && spec != null) {
                    val pre = spec.getJSONObject("preprocessing")
                    val labels = spec.getJSONArray("class_names")
                    val shape = runner.inputShape
                    val bmp = Bitmap.createScaledBitmap(sample(img)!!, shape[2], shape[1], true)
                    val px = IntArray(shape[1] * shape[2]).also { bmp.getPixels(it, 0, shape[2], 0, 0, shape[2], shape[1]) }
                    val x = Preprocess.toModelInput(px, pre.getInt("channels"), pre.getString("scale"))
                    sb.append("Top-3 for $img:\n")
                    for ((i, score) in runner.top3(x)) {
                        sb.append("  ${if (i < labels.length()) labels.getString(i) else "#$i"}: ${"%.3f".format(score)}\n")
                    }
                }
                val r = runner.benchmark(size)
                val s = r.latency
                sb.append("\n${r.model} on ${r.delegateUsed}, ${args.threads} thread(s), ${args.runs} runs after ${args.warmup} warm-up\n")
                sb.append("init %.1f ms, first %.2f ms\nmean %.3f ms, p50 %.3f ms, p90 %.3f ms".format(r.initMs, r.firstInferenceMs, s.mean, s.p50, s.p90))
                sb.toString()
            }
        } catch (e: Throwable) {
            "Error: ${e.message}"
        }
        runOnUiThread { show(text) }
    }

    private fun show(text: String) {
        output.text = text
    }
}
