import json
import subprocess
import sys

import numpy as np
import pytest

from edgecompress.lite import latency
from edgecompress.errors import EdgeCompressError
from edgecompress.lite.runtime import check_tflite_file, make_interpreter, probe_in_child, runtime_info


def test_prefers_ai_edge_litert():
    assert runtime_info().name == "ai-edge-litert"


def test_the_device_folder_stands_alone_and_imports_no_tensorflow(tmp_path):
    """What `bench-device` copies (`edgecompress.lite.device_files()`), copied alone as it does, imports every
    one of its modules and runs a benchmark without TensorFlow and without any other file of the package."""
    import shutil

    from edgecompress import lite

    files = lite.device_files()
    assert "lite/latency.py" in files and "errors.py" in files
    for rel in files:
        (tmp_path / "edgecompress" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lite.PACKAGE_ROOT / rel, tmp_path / "edgecompress" / rel)
    mods = ["edgecompress"] + [("edgecompress." + r[:-3].replace("/", ".")).removesuffix(".__init__")
                               for r in files if r.endswith(".py") and r != "__init__.py"]
    code = (f"import json, sys; import {', '.join(mods)}; from edgecompress.lite import latency;"
            "r = latency.benchmark(str(latency.TRIVIAL_MODEL), runs=3, warmup=1);"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow','tf_keras','keras'))))")
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [{str(tmp_path)!r}] + "
                          f"[p for p in {sys.path!r} if 'site-packages' in p]; " + code],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("module", ["edgecompress.data.preprocessing", "edgecompress"])
def test_image_decoding_and_the_public_api_import_no_tensorflow(root, module):
    code = (f"import sys, {module}; from edgecompress.lite.runtime import runtime_info; runtime_info();"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow','tf_keras','keras'))))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], cwd=root, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("content, needle", [
    (b"", "0 bytes long"),
    (b"\x00" * 100, "no 'TFL3' identifier"),
    (b"\xff\xff\x00\x00TFL3" + b"\x00" * 40, "truncated"),
])
def test_structural_checks(tmp_path, content, needle):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(EdgeCompressError, match=needle):
        check_tflite_file(p)


def test_missing_file(tmp_path):
    with pytest.raises(EdgeCompressError, match="not found"):
        make_interpreter(tmp_path / "none.tflite")


@pytest.mark.slow
def test_truncated_real_model_fails_cleanly_in_child(tmp_path, tiny_tflites):
    data = tiny_tflites["int8"].read_bytes()
    p = tmp_path / "trunc.tflite"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeCompressError, match=str(p.name)):
        probe_in_child(p)


def test_random_bytes_with_tflite_header(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "rand.tflite"
    p.write_bytes(b"\x10\x00\x00\x00TFL3" + rng.bytes(5000))
    with pytest.raises(EdgeCompressError):
        probe_in_child(p)


def test_dynamic_input_dimensions_refused(tmp_path):
    from edgecompress.models.backend import tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def f(x):
        return x * 2.0

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()]).convert()
    p = tmp_path / "dyn.tflite"
    p.write_bytes(data)
    with pytest.raises(EdgeCompressError, match="dynamic dimensions"):
        make_interpreter(p)


@pytest.mark.slow
def test_benchmark_fields(tiny_tflites):
    r = latency.benchmark(tiny_tflites["int8"], runs=50, warmup=5, threads=1)
    lat = r["latency_ms"]
    assert lat["count"] == 50 and lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["input"]["dtype"] == "int8" and r["input"]["shape"] == [1, 28, 28, 1]
    assert r["warmup"]["count"] == 5 and r["init_ms"] > 0 and r["memory_mb"]["peak_rss"] > 0
    assert r["runtime"]["name"] == "ai-edge-litert"


@pytest.mark.slow
def test_benchmark_without_xnnpack_and_from_npy(tmp_path, tiny_tflites):
    x = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    r = latency.benchmark(tiny_tflites["int8"], runs=10, warmup=0, xnnpack=False, input_source=tmp_path / "x.npy")
    assert r["xnnpack"] is False and r["input"]["source"].endswith("x.npy")


@pytest.mark.slow
def test_bad_npy_shape(tmp_path, tiny_tflites):
    np.save(tmp_path / "x.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(EdgeCompressError, match=r"has shape \(3, 3\); the model wants \[1, 28, 28, 1\]"):
        latency.benchmark(tiny_tflites["int8"], runs=1, input_source=tmp_path / "x.npy")


@pytest.mark.slow
def test_cli_reports_bad_files_without_traceback(root, tmp_path, tiny_tflites):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"nope")
    out = subprocess.run([sys.executable, "-m", "edgecompress.lite.latency", str(tiny_tflites["int8"]), str(bad),
                          str(tmp_path / "missing.tflite"), "--runs", "5", "--json", str(tmp_path / "o.json")],
                         cwd=root, capture_output=True, text=True)
    assert out.returncode == 4, out.stderr  # partial failure: the good file is in the JSON
    assert "Traceback" not in out.stderr
    assert "bad.tflite is 4 bytes long" in out.stderr and "missing.tflite" in out.stderr
    result = json.loads((tmp_path / "o.json").read_text())
    assert [r["model"] for r in result["results"]] == ["int8.tflite"]
    assert result["device"]["tensorflow_imported"] is False
    assert 0 < result["harness_overhead_us"] < 1000
