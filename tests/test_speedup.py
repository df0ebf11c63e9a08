"""`lite.speedup`: files timed against a reference in interleaved rounds, and the selected file of a build
with `--max-latency-ms` timed so beside the model's own float32 file."""

import json

import pytest

from edgecompress.errors import EdgeCompressError


def _tflite(path, convs: int, filters: int):
    """A float32 file of `convs` 3x3 convolutions of `filters` channels on 32x32x3: its cost grows with both."""
    from edgecompress.models.backend import keras, tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = inp
    for _ in range(convs):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert())
    return path


@pytest.fixture(scope="module")
def light_and_heavy(tmp_path_factory):
    out = tmp_path_factory.mktemp("speedup")
    return _tflite(out / "light.tflite", 1, 4), _tflite(out / "heavy.tflite", 6, 48)


def test_a_file_of_a_tenth_of_the_work_is_timed_several_times_as_fast_in_every_round(light_and_heavy):
    from edgecompress.lite import speedup

    light, heavy = light_and_heavy
    r = speedup.compare(heavy, [light, heavy], rounds=4, runs=30)
    assert [f["model"] for f in r["files"]] == ["heavy.tflite", "light.tflite", "heavy.tflite"]
    assert r["rounds"] == 4 and r["runs"] == 30 and all(len(f["round_p50_ms"]) == 4 for f in r["files"])
    ref, fast, same = r["files"]
    assert ref["speedup"] == {"median": 1.0, "low": 1.0, "high": 1.0}
    # 6 convolutions of 48 channels against 1 of 4: over a hundred times the multiply-adds.
    assert fast["speedup"]["low"] > 3 and fast["latency_ms"]["p50"] * 3 < ref["latency_ms"]["p50"]
    assert 0.5 < same["speedup"]["median"] < 2  # the same file, loaded twice: about as fast
    line = speedup.speedup_line(r)
    assert line.startswith("`light.tflite` is ") and "x as fast as `heavy.tflite`" in line
    assert "median of 4 interleaved rounds of 30 invokes each" in line and r["cpu"] in line
    # Invokes per round from the reference's own time: about 200 ms of it, 20 to 500.
    assert 20 <= speedup.compare(heavy, [light], rounds=1)["runs"] <= 500


def test_compare_names_what_is_wrong(light_and_heavy, tmp_path):
    from edgecompress.lite import speedup

    light, heavy = light_and_heavy
    with pytest.raises(EdgeCompressError, match=r"rounds=0"):
        speedup.compare(heavy, [light], rounds=0)
    with pytest.raises(EdgeCompressError, match=r"no file to compare"):
        speedup.compare(heavy, [])
    with pytest.raises(EdgeCompressError, match="nope.tflite"):
        speedup.compare(heavy, [tmp_path / "nope.tflite"])


def test_the_command_line_prints_a_line_per_file_and_writes_json(light_and_heavy, tmp_path, root):
    import subprocess
    import sys

    light, heavy = light_and_heavy
    proc = subprocess.run([sys.executable, "-m", "edgecompress.lite.speedup", str(heavy), str(light), "--rounds", "2",
                           "--runs", "20", "--json", str(tmp_path / "s.json")], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "`light.tflite` is" in proc.stdout and "import tensorflow" not in proc.stderr
    assert json.loads((tmp_path / "s.json").read_text())["files"][1]["model"] == "light.tflite"


def test_a_latency_limit_times_every_file_together_before_the_gate_compares_them(light_and_heavy, tmp_path):
    """Each file's p50 in a build is of its own moment; with --max-latency-ms on this host every file is timed
    again in interleaved rounds, the gate compares those p50s, and the report says how many times as fast as
    the baseline the chosen file ran in them."""
    from edgecompress.builder.selection import Constraints, GateError, apply_selection
    from edgecompress.report.write import render_markdown

    light, heavy = light_and_heavy

    def art(name, path, p50):
        return {"name": name, "path": str(path), "quantization": "none", "accuracy": 0.9, "agreement": None,
                "size_bytes": path.stat().st_size, "gzip_bytes": path.stat().st_size, "latency_ms": {"p50": p50}}
    # The build's own timings, of other moments: here they say the light file is the slow one.
    report = {"baseline": "heavy", "threads": 1, "dataset": {"name": "d", "split": "test", "count": 1},
              "artifacts": [art("heavy", heavy, 0.001), art("light", light, 1000.0)]}
    heavy_alone = speedup_compare_p50(heavy)
    apply_selection(report, Constraints(max_latency_ms=heavy_alone / 3), tmp_path)
    heavy_a, light_a = report["artifacts"]
    assert report["selected"] == "light" and light_a["latency_ms"]["p50"] < heavy_alone / 3
    assert light_a["speedup"] > 3 and heavy_a["speedup"] == 1.0 and heavy_a["latency_ms"]["count"] > 20
    assert report["latency_timing"]["reference"] == "heavy.tflite" and report["latency_timing"]["rounds"] == 5
    assert report["speedup"]["file"] == "light" and report["speedup"]["line"].startswith("`light.tflite` is ")
    md = render_markdown(report)
    assert "every file was timed again in 5 interleaved rounds" in md and report["speedup"]["line"] in md
    # A limit no file meets as timed together: exit 3, nothing selected, the timings still in the report.
    with pytest.raises(GateError, match=r"--max-latency-ms 1e-06: best"):
        apply_selection(report, Constraints(max_latency_ms=1e-6), tmp_path)
    assert report["selected"] is None and "speedup" not in report
    # No latency limit: the p50s are left as they were.
    report["artifacts"][1]["latency_ms"] = {"p50": 1000.0}
    apply_selection(report, Constraints(max_accuracy_drop=1.0), tmp_path)
    assert report["artifacts"][1]["latency_ms"] == {"p50": 1000.0} and "speedup" not in report


def speedup_compare_p50(path) -> float:
    from edgecompress.lite import speedup

    return speedup.compare(path, [path], rounds=2, runs=50)["files"][0]["latency_ms"]["p50"]
