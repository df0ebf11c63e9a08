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


def _file_and_cuts(path):
    from edgecompress.lite.profile import one_op_files
    from edgecompress.lite.reader import ModelFile

    data = path.read_bytes()
    return ModelFile(data), list(one_op_files(data))


def test_each_op_cut_out_alone_computes_what_it_computed_in_the_file(tmp_path):
    """`lite.profile` times each op in a file of its own; that file must hold the same op: fed the values its
    inputs had in the whole file's run, it gives the same outputs (int8: bit for bit)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.schemes import conversion

    model = _hard_swish_model()
    x = np.random.default_rng(1).normal(0, 2, (8, 16, 16, 3)).astype("float32")
    rep = lambda: ([x[i:i + 1]] for i in range(len(x)))  # noqa: E731
    for name in ("float32", "int8"):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(convert(model, conversion(name), rep))
        whole = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        whole.allocate_tensors()
        d = whole.get_input_details()[0]
        whole.set_tensor(d["index"], np.random.default_rng(2).integers(-128, 127, d["shape"]).astype(d["dtype"])
                         if d["dtype"] == np.int8 else x[:1])
        whole.invoke()
        f, cuts = _file_and_cuts(path)
        assert [c[0] for c in cuts] == list(range(len(f.ops))) and all(c[2] is not None for c in cuts)
        for (index, op, data, _), info in zip(cuts, f.ops):
            alone = make_interpreter(model_content=data, num_threads=1, use_xnnpack=False)
            runtime_inputs = [t for t in info["inputs"] if t >= 0 and f.constant(t) is None]
            for detail, t in zip(alone.get_input_details(), runtime_inputs):
                alone.set_tensor(detail["index"], whole.get_tensor(t))
            alone.invoke()
            for detail, t in zip(alone.get_output_details(), info["outputs"]):
                np.testing.assert_allclose(alone.get_tensor(detail["index"]).astype("float64"),
                                           whole.get_tensor(t).astype("float64"), rtol=1e-6, atol=1e-6,
                                           err_msg=f"{name}: op {index} ({op})")


def test_the_time_outside_the_delegate_is_said_as_a_share_of_the_op_time(tmp_path):
    from edgecompress.lite.profile import op_times, profile, profile_line

    path = _split_graph(tmp_path)
    d = delegation(make_interpreter(path, num_threads=1))
    t = op_times(path, runs=20, outside=set(d["outside_nodes"]))
    assert {r["op"] for r in t["ops"]} >= {"CUMSUM", "FULLY_CONNECTED"} and not t["untimed"]
    assert all(r["ms"] > 0 for r in t["ops"]) and abs(sum(e["share"] for e in t["by_op"].values()) - 1) < 1e-9
    cumsum = t["by_op"]["CUMSUM"]["ms"]
    assert abs(t["outside_ms"] - cumsum) < 1e-12 and 0 < t["outside_share"] < 1
    line = profile_line(profile(path, d, runs=20), d)
    assert line.startswith("CUMSUM outside the delegate: ") and "% of the op time; most time: " in line, line
    assert "ops timed alone sum to" in line and "peak memory +" in line


def test_peak_memory_follows_the_weights_a_file_holds(tmp_path):
    """A fresh process per file: 4 MB of float32 weights raise the peak by megabytes more than 4 KB do (both
    pay the runtime's and the delegate's own start: about 6 MB here)."""
    from edgecompress.lite.profile import peak_memory_mb
    from edgecompress.models.backend import tf

    sizes = {}
    for units in (32, 1024):
        w = tf.constant(np.random.default_rng(0).normal(0, 1, (units, units)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([1, units], tf.float32)])
        def f(x, w=w):
            return tf.nn.relu(tf.matmul(x, w))

        path = tmp_path / f"dense{units}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert())
        sizes[units] = peak_memory_mb(path)
    assert sizes[1024] - sizes[32] > 3.0, sizes


def test_the_report_line_of_a_profiled_file():
    from edgecompress.report.write import delegation_lines

    split = {"partitions": 2, "nodes": 3, "delegated_nodes": 2, "outside": {"CUMSUM": 1}, "outside_nodes": [1]}
    prof = {"ops": {"sum_ms": 0.010, "outside_share": 0.6, "untimed": [],
                    "by_op": {"CUMSUM": {"count": 1, "ms": 0.006, "share": 0.6},
                              "FULLY_CONNECTED": {"count": 2, "ms": 0.004, "share": 0.4}}},
            "peak_memory_mb": 1.25}
    lines = delegation_lines({"artifacts": [{"name": "int8", "delegation": split, "profile": prof}]})
    assert lines[-1] == ("- `int8`: 2 XNNPACK partitions; CUMSUM ran outside it (1 of 3 nodes); CUMSUM outside the "
                         "delegate: 60% of the op time; most time: CUMSUM 60%, FULLY_CONNECTED 40%; ops timed alone "
                         "sum to 0.010 ms; peak memory +1.2 MB")


def test_a_pruned_model_is_still_rewritten():
    """A pruned model's layers have several inbound nodes (tfmot's `strip_pruning` clones the model reusing
    its layers); the rewrite reads the model's own graph. `lite.profile` found every pruned MobileNetV3 int8
    file with 18 HARD_SWISH ops outside XNNPACK, 60% of its op time, before."""
    from edgecompress.models.backend import keras
    from edgecompress.quantize.rewrites import hard_swish_multiplies, unfused_hard_swish

    model = keras.models.clone_model(_hard_swish_model(), clone_function=lambda layer: layer)  # as strip_pruning
    assert max(len(layer._inbound_nodes) for layer in model.layers[1:]) == 2
    assert len(hard_swish_multiplies(model)) == 4
    assert hard_swish_multiplies(unfused_hard_swish(model)) == {}


def test_a_selective_int8_file_takes_the_rewrite_too(tmp_path):
    """Layers kept in float (`float_layers`, and the int8 recovery that picks them) convert the same rewritten
    graph as int8: no HARD_SWISH for XNNPACK to leave out (`invoke bench --profile` found 65% of a selective
    MobileNetV3 file's op time there)."""
    from edgecompress.lite.reader import ops
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.debugger import find_float_layers
    from edgecompress.quantize.schemes import ConversionConfig, Quantization

    model = _hard_swish_model()
    x = np.random.default_rng(0).normal(0, 2, (16, 16, 16, 3)).astype("float32")
    rep = lambda: ([x[i:i + 1]] for i in range(len(x)))  # noqa: E731
    dense = [layer.name for layer in model.layers if type(layer).__name__ == "Dense"]
    conv = ConversionConfig("int8_selective", Quantization.INT8, io_dtype="float32", float_fallback=True,
                            float_layers=tuple(dense))
    names = {op["op"] for op in ops(convert(model, conv, rep))}
    assert "HARD_SWISH" not in names and "DEQUANTIZE" in names, names
    y = model.predict(x, verbose=0).argmax(1)
    r = find_float_layers(model, rep, x, y, max_drop=1.0, float_accuracy=1.0, max_layers=1)
    assert r["data"] is not None and "HARD_SWISH" not in {op["op"] for op in ops(r["data"])}


def test_a_float16_file_is_profiled_and_its_weight_dequantize_is_said_not_timed(tmp_path):
    """A float16 file's DEQUANTIZE ops read constants only (XNNPACK refused one alone: "failed to setup XNNPACK
    runtime", which stopped a build); they are listed as not timed, every other op is timed."""
    from edgecompress.lite.profile import op_times
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.schemes import conversion

    path = tmp_path / "float16.tflite"
    path.write_bytes(convert(_hard_swish_model(), conversion("float16"), None))
    t = op_times(path, runs=5)
    assert {u["op"] for u in t["untimed"]} == {"DEQUANTIZE"}, t["untimed"]
    assert all("constants only" in u["why_not"] for u in t["untimed"])
    assert all(r["ms"] > 0 for r in t["ops"] if r["op"] != "DEQUANTIZE") and t["sum_ms"] > 0


def test_a_relu_student_has_no_hard_swish_left_and_its_int8_file_fewer_ops(tmp_path):
    """`DistillConfig(hard_swish="relu")` (a lever for speed): the student computes ReLU where the teacher has
    hard-swish, keeps every weight it inherited, and its int8 file has three ops fewer per hard-swish (the
    ReLU fuses into the convolution before it)."""
    from edgecompress.lite.reader import ops
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.rewrites import hard_swish_multiplies
    from edgecompress.quantize.schemes import conversion
    from edgecompress.techniques.configs import DistillConfig
    from edgecompress.techniques.distill import _make_student, relu_for_hard_swish

    teacher = _hard_swish_model()
    keep, _ = _make_student(teacher, DistillConfig(width=0.5), seed=0)
    relu, inherited = _make_student(teacher, DistillConfig(width=0.5, hard_swish="relu"), seed=0)
    assert inherited and len(hard_swish_multiplies(keep)) == 4 and hard_swish_multiplies(relu) == {}
    assert relu.count_params() == keep.count_params()
    for a, b in zip(keep.get_weights(), relu.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert relu_for_hard_swish(relu) is relu  # nothing left to replace
    x = np.random.default_rng(0).normal(0, 2, (16, 16, 16, 3)).astype("float32")
    rep = lambda: ([x[i:i + 1]] for i in range(len(x)))  # noqa: E731
    count = {}
    for name, model in (("keep", keep), ("relu", relu)):
        count[name] = len(ops(convert(model, conversion("int8"), rep)))
    assert count["keep"] - count["relu"] == 3 * 4, count
    assert DistillConfig(width=0.5, hard_swish="relu").lever() == ("structured", "width 0.5, relu for hard-swish")
    import pytest

    from edgecompress.errors import EdgeCompressError

    with pytest.raises(EdgeCompressError, match="hard_swish='swish'"):
        DistillConfig(hard_swish="swish")


def test_a_squeeze_excite_reshape_converts_inside_the_delegate_with_the_same_outputs(tmp_path):
    """Converted at batch size 1 (`rewrites.converter_of`), a Keras 3 squeeze-excite block (EfficientNet's:
    GlobalAveragePooling2D, Reshape to 1x1xC, two 1x1 convs, Multiply) is one RESHAPE of constant shape, not
    SHAPE, STRIDED_SLICE, PACK and RESHAPE outside XNNPACK at each block: one partition where the Keras model's
    own converter makes one per block plus one. Float32 outputs are identical; int8 keeps every top-1."""
    import keras

    from edgecompress.models.backend import tf
    from edgecompress.models.translate import to_tf_keras
    from edgecompress.quantize.convert import convert
    from edgecompress.quantize.schemes import conversion

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="swish")(inp)
    for _ in range(2):
        s = keras.layers.GlobalAveragePooling2D()(x)
        s = keras.layers.Reshape((1, 1, 8))(s)
        s = keras.layers.Conv2D(2, 1, activation="swish")(s)
        s = keras.layers.Conv2D(8, 1, activation="sigmoid")(s)
        x = keras.layers.Multiply()([x, s])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = to_tf_keras(keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x)))
    xs = np.random.default_rng(0).normal(0, 1, (16, 16, 16, 3)).astype("float32")
    rep = lambda: ([xs[i:i + 1]] for i in range(len(xs)))  # noqa: E731
    as_keras = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    before = delegation(make_interpreter(model_content=as_keras, num_threads=1))
    assert before["partitions"] == 3 and before["outside"]["SHAPE"] == 2, before  # what the fix is measured against
    want = model.predict(xs, verbose=0)
    for name in ("float32", "int8"):
        data = convert(model, conversion(name), rep)
        interp = make_interpreter(model_content=data, num_threads=1)
        d = delegation(interp)
        assert d["partitions"] == 1 and set(d["outside"]) <= {"SOFTMAX"}, (name, d)
        i, o = interp.get_input_details()[0], interp.get_output_details()[0]
        assert list(i["shape_signature"]) == [1, 16, 16, 3]
        got = []
        (si, zi), (so, zo) = i["quantization"], o["quantization"]
        for k in range(len(xs)):
            interp.set_tensor(i["index"], xs[k:k + 1] if not si else
                              np.clip(np.round(xs[k:k + 1] / si + zi), -128, 127).astype(np.int8))
            interp.invoke()
            out = interp.get_tensor(o["index"])[0]
            got.append((out.astype("float32") - zo) * so if so else out.copy())
        got = np.array(got)
        if name == "float32":
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert (got.argmax(1) == want.argmax(1)).mean() >= (1.0 if name == "float32" else 0.9)


def test_the_converter_saves_only_the_variables_and_gives_the_keras_models_bytes():
    """`converter_of` hands the converter the model's variables, not the Keras model, as what it saves before
    converting (a Keras model's save traces every layer: 3-6x slower, `scripts/conversion_time.py`); the file
    is byte for byte the one the Keras model as trackable gives, float32 and int8."""
    import keras

    from edgecompress.models.backend import tf
    from edgecompress.models.translate import to_tf_keras
    from edgecompress.quantize.rewrites import converter_of

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    s = keras.layers.Reshape((1, 1, 8))(keras.layers.GlobalAveragePooling2D()(x))
    x = keras.layers.Multiply()([x, keras.layers.Conv2D(8, 1, activation="sigmoid")(s)])
    model = to_tf_keras(keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))))
    ours = converter_of(model)
    assert ours._trackable_obj is not model and not isinstance(ours._trackable_obj, type(model))
    assert {id(v) for v in ours._trackable_obj.variables_read} == {id(v) for v in model.variables}

    @tf.autograph.experimental.do_not_convert
    def call(x):
        return model(x, training=False)

    spec = tf.TensorSpec([1, 12, 12, 3], tf.float32)
    xs = np.random.default_rng(0).normal(0, 1, (4, 1, 12, 12, 3)).astype("float32")
    for int8 in (False, True):
        files = []
        for c in (ours if not int8 else converter_of(model),
                  tf.lite.TFLiteConverter.from_concrete_functions([tf.function(call).get_concrete_function(spec)],
                                                                  model)):
            if int8:
                c.optimizations = [tf.lite.Optimize.DEFAULT]
                c.representative_dataset = lambda: ([x] for x in xs)
            files.append(c.convert())
        assert files[0] == files[1], ("int8" if int8 else "float32", len(files[0]), len(files[1]))
