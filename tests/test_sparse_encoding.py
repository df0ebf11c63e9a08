"""The flatbuffer's sparse tensor encoding, measured and dropped (`scripts/sparse_encoding.py`).

Issue 42 asked for it if LiteRT runs it on the host and on aarch64. `docs/results/sparse_encoding.json` says
why it is not a scheme: LiteRT with XNNPACK, as every build measures and as an app runs by default, refuses to
prepare a sparse int8 or dynamic-range file on this host, and TensorFlow Lite Micro has no DENSIFY kernel. This
test runs the script on a tiny pruned model and fails when that stops being so, so that the decision is made
again.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_a_sparse_int8_file_is_smaller_but_litert_with_xnnpack_and_tflm_refuse_it(root, tmp_path, tiny_model):
    from edgecompress.models.keras_io import save_model

    for layer in tiny_model.layers:  # 80% of each kernel's smallest weights set to zero, as pruning leaves them
        weights = layer.get_weights()
        if weights and weights[0].ndim >= 2:
            k = weights[0]
            k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
            layer.set_weights([k, *weights[1:]])
    save_model(tiny_model, tmp_path / "pruned.keras")
    done = subprocess.run([sys.executable, "scripts/sparse_encoding.py", str(tmp_path / "pruned.keras"), "--out",
                           str(tmp_path / "files"), "--json", str(tmp_path / "r.json")], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads((tmp_path / "r.json").read_text())
    files, host = r["sparse_files"], next(iter(r["runs_on"].values()))
    assert r["weight_sparsity"] >= 0.75
    assert files["int8_sparse"]["file_bytes"] < files["int8"]["file_bytes"]
    assert files["int8_sparse"]["densify_ops"] > 0
    assert host["int8"]["dense_runs"] and not host["int8"]["sparse_runs"], host["int8"]
    assert "XNNPack" in host["int8"]["refused"]
    assert host["float32"]["sparse_runs"] and host["float32"]["max_abs_difference"] == 0.0
    assert files["int8"]["tflm"]["runs"] and files["int8_sparse"]["tflm"]["refused"].startswith("DENSIFY")
