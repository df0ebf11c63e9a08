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
