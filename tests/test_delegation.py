"""Where the time goes (issue 22, first step): which ops the XNNPACK delegate took and which it left to the
runtime's own kernels, read from the interpreter and written in the report."""

import numpy as np

from edgecompress.lite.latency import benchmark, delegation, delegation_line
from edgecompress.lite.runtime import make_interpreter


def _split_graph(tmp_path):
    """matmul -> CUMSUM (no XNNPACK kernel) -> matmul: two partitions around one op outside them."""
    from edgecompress.models.backend import tf

    w = tf.constant(np.random.default_rng(0).normal(0, 1, (8, 8)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def f(x):
        return tf.nn.relu(tf.matmul(tf.math.cumsum(tf.nn.relu(tf.matmul(x, w)), axis=1), w))

    path = tmp_path / "split.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert())
    return path


def test_an_op_without_a_delegate_kernel_splits_the_graph_and_is_named(tmp_path):
    path = _split_graph(tmp_path)
    d = delegation(make_interpreter(path, num_threads=1))
    assert d["partitions"] == 2 and d["outside"] == {"CUMSUM": 1} and d["delegated_nodes"] == d["nodes"] - 1
    assert delegation_line(d) == f"2 XNNPACK partitions; CUMSUM ran outside it (1 of {d['nodes']} nodes)"
    plain = benchmark(path, runs=3, warmup=0, xnnpack=False, probe=False)["delegation"]
    assert plain["partitions"] == 0 and sum(plain["outside"].values()) == plain["nodes"]
    assert delegation_line(plain).startswith("no delegate")


def test_the_report_names_the_files_the_delegate_did_not_take_whole():
    from edgecompress.report.write import delegation_lines

    whole = {"partitions": 1, "nodes": 5, "delegated_nodes": 5, "outside": {}}
    split = {"partitions": 19, "nodes": 90, "delegated_nodes": 70, "outside": {"MEAN": 9, "MUL": 11}}
    lines = delegation_lines({"artifacts": [{"name": "float32", "delegation": whole},
                                            {"name": "int8", "delegation": split}]})
    assert "- `int8`: 19 XNNPACK partitions; MEAN x9, MUL x11 ran outside it (20 of 90 nodes)" in lines
    assert lines[-1] == "- every other file (1): one partition, every op inside it"
    assert delegation_lines({"artifacts": [{"name": "old"}]}) == []  # a report from before: nothing said


def _hard_swish_model():
    """A Keras 3 convnet with hard-swish activations (MobileNetV3's), translated to tf-keras."""
    import keras

    from edgecompress.models.translate import to_tf_keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = inp
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="hard_silu")(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        x = keras.layers.Activation("hard_swish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return to_tf_keras(keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x)))


def test_int8_writes_hard_swish_so_that_xnnpack_takes_the_whole_graph(tmp_path):
    """The int8 scheme converts `(x / 6) * relu6(x + 3)` (`quantize.rewrites`): the same function, no HARD_SWISH
    op for XNNPACK to leave out; float32 keeps the fused op, which XNNPACK runs."""
    from edgecompress.lite.reader import ops
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.rewrites import hard_swish_multiplies, unfused_hard_swish
    from edgecompress.quantize.schemes import conversion

    model = _hard_swish_model()
    assert len(hard_swish_multiplies(model)) == 4
    rewritten = unfused_hard_swish(model)
    assert hard_swish_multiplies(rewritten) == {} and rewritten.count_params() == model.count_params()
    x = np.random.default_rng(0).normal(0, 2, (16, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(rewritten.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    rep = lambda: ([x[i:i + 1]] for i in range(len(x)))  # noqa: E731
    files = {}
    for name in ("float32", "int8"):
        files[name] = tmp_path / f"{name}.tflite"
        files[name].write_bytes(convert(model, conversion(name), rep))
    names = {k: {op["op"] for op in ops(f.read_bytes())} for k, f in files.items()}
    assert "HARD_SWISH" in names["float32"] and "HARD_SWISH" not in names["int8"], names
    d = delegation(make_interpreter(files["int8"], num_threads=1))
    assert d["partitions"] == 1 and set(d["outside"]) <= {"SOFTMAX"}, d
    assert unfused_hard_swish(rewritten) is rewritten  # nothing left to rewrite: the model itself
