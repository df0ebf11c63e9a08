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
