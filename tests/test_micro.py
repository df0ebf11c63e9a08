"""TensorFlow Lite Micro's view of a file: whether it runs it, its tensor arena, the op it refuses."""

import numpy as np

from edgecompress.data.preprocessing import to_model_input
from edgecompress.lite.evaluation import evaluate_tflite
from edgecompress.lite.micro import micro_fit, micro_outputs


def test_tflm_runs_int8_and_float32_files_with_an_arena_and_names_what_it_refuses(tiny_tflites, tiny_model, tmp_path):
    from edgecompress.quantize import convert, schemes

    dynamic = convert.write_tflite(convert.convert(tiny_model, schemes.dynamic_range(), None), tmp_path, "dynamic")
    fits = {name: micro_fit(path) for name, path in {**tiny_tflites, "dynamic": dynamic}.items()}
    assert fits["int8"].runs and fits["float32"].runs
    # The arena holds the activations: 4 bytes each in float32, 1 in int8, so int8's is well under float32's.
    assert 0 < fits["int8"].arena_bytes < 0.6 * fits["float32"].arena_bytes
    assert not fits["dynamic"].runs and fits["dynamic"].arena_bytes is None
    assert fits["dynamic"].refused.startswith("CONV_2D (node") and "Hybrid models are not supported" in \
        fits["dynamic"].refused


def test_tflm_computes_what_litert_computes_on_an_int8_file(tiny_tflites, tiny_dataset):
    x = to_model_input(tiny_dataset.x_test[:100], tiny_dataset.preprocessing)
    y = tiny_dataset.y_test[:100]
    micro = micro_outputs(tiny_tflites["int8"], x).argmax(-1)
    litert, _ = evaluate_tflite(tiny_tflites["int8"], x, y)
    assert np.mean(micro == y) == litert["accuracy"]  # the same kernels' arithmetic, to the example


def test_the_device_benchmark_runs_each_file_on_tflm_too_and_the_device_table_says_it(tiny_tflites, tiny_model,
                                                                                       tiny_dataset, tmp_path):
    """`bench-device --tflm` runs this module on the device: TFLM's arena, what it refuses, its top-1 and its
    agreement with LiteRT there. Run here, as the device runs it (no TensorFlow in the child)."""
    import json
    import subprocess
    import sys

    from edgecompress.quantize import convert, schemes
    from edgecompress.report.tables import device_table

    dynamic = convert.write_tflite(convert.convert(tiny_model, schemes.dynamic_range(), None), tmp_path, "dynamic")
    x = to_model_input(tiny_dataset.x_test[:60], tiny_dataset.preprocessing)
    np.savez(tmp_path / "eval.npz", x=x, y=tiny_dataset.y_test[:60])
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "edgecompress.lite.latency", str(tiny_tflites["int8"]), str(dynamic),
                           "--runs", "5", "--warmup", "1", "--eval-data", str(tmp_path / "eval.npz"), "--tflm",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    int8, hybrid = results["int8.tflite"]["tflm"], results["dynamic.tflite"]["tflm"]
    assert int8["runs"] and int8["arena_bytes"] == micro_fit(tiny_tflites["int8"]).arena_bytes
    assert int8["agreement"] == 1.0 and int8["top1"] == results["int8.tflite"]["accuracy"]["top1"]  # same arithmetic
    assert not hybrid["runs"] and "Hybrid models are not supported" in hybrid["refused"] and "agreement" not in hybrid
    report = {"artifacts": [{"name": "int8"}, {"name": "dynamic"}], "devices": {"pi": {"results": {
        "int8": results["int8.tflite"], "dynamic": results["dynamic.tflite"]}}}, "dataset": {"task": "classification"}}
    rows = device_table(report)
    assert rows[0][-1] == "pi TFLM" and rows[1][-1].endswith("KB arena, 100.00% agree") and \
        rows[2][-1] == "refused: CONV_2D (node 2)"


def test_tflm_takes_int4_kernels_only_with_one_scale_per_kernel_and_unpacks_them_into_its_arena(tmp_path):
    """Why `--target mcu` offers no int4 scheme: TFLM's FULLY_CONNECTED refuses int4 weights with a scale per
    channel (LiteRT Quantizer's int4), and with one scale per kernel it runs them but unpacks the kernel to
    int8 in a scratch buffer of the arena, so the RAM grows by the largest kernel's values."""
    from edgecompress.models.backend import keras
    from edgecompress.quantize import aeq, convert, schemes

    keras.utils.set_random_seed(0)
    inp = keras.Input((256,))
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Dense(128, activation="relu")(inp)))
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(8):
            yield [rng.normal(size=(1, 256)).astype(np.float32)]

    float32 = convert.convert(model, schemes.float32())
    per_channel, _ = aeq.quantize(float32, "static_wi4_ai8", rep)
    per_kernel, _ = aeq.quantize(float32, "static_wi4_ai8_tensorwise", rep)
    int8 = convert.convert(model, schemes.int8_full(), rep)
    fits = {}
    for name, data in {"per_channel": per_channel, "per_kernel": per_kernel, "int8": int8}.items():
        (tmp_path / f"{name}.tflite").write_bytes(data)
        fits[name] = micro_fit(tmp_path / f"{name}.tflite")
    assert not fits["per_channel"].runs and fits["per_channel"].refused.startswith("FULLY_CONNECTED (node 0)")
    assert fits["per_kernel"].runs and fits["int8"].runs
    assert len(per_kernel) < 0.7 * len(int8)  # half the weight bytes
    grew = fits["per_kernel"].arena_bytes - fits["int8"].arena_bytes
    assert 0.9 * 256 * 128 <= grew <= 1.1 * 256 * 128, grew  # about the unpacked 256x128 kernel
