"""A file without the names no kernel reads (`lite.strip`): fewer bytes, the same outputs on LiteRT and on
TensorFlow Lite Micro, the same arena; the `mcu` target makes every file so, and says so in its record."""

import numpy as np
import pytest

from edgecompress.builder.targets import target
from edgecompress.data.preprocessing import to_model_input
from edgecompress.lite.micro import micro_fit, micro_outputs
from edgecompress.lite.reader import ModelFile, weight_sparsity
from edgecompress.lite.strip import strip_names


def _outputs(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for row in x:
        it.set_tensor(i["index"], row[None].astype(i["dtype"]) if i["dtype"] != np.int8 else
                      np.clip(np.round(row / i["quantization"][0] + i["quantization"][1]), -128, 127)[None]
                      .astype(np.int8))
        it.invoke()
        out.append(it.get_tensor(o["index"])[0])
    return np.stack(out), it.get_signature_list()


def test_a_stripped_file_is_smaller_and_computes_the_same_on_litert_and_tflm(tiny_tflites, tiny_dataset, tmp_path):
    x = to_model_input(tiny_dataset.x_test[:40], tiny_dataset.preprocessing)
    for name in ("int8", "float32"):
        data = tiny_tflites[name].read_bytes()
        small = strip_names(data)
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(small)
        names = sum(len(t.name) for t in ModelFile(data).graph.tensors)
        assert len(data) - len(small) >= names > 0, (name, len(small), len(data), names)  # at least their bytes
        assert all(not t.name for t in ModelFile(small).graph.tensors)
        before, signatures = _outputs(tiny_tflites[name], x)
        after, none = _outputs(path, x)
        np.testing.assert_array_equal(after, before)
        assert signatures and not none  # the signature runner goes with the names
        assert weight_sparsity(small)["overall"] == weight_sparsity(data)["overall"]  # read by tensor index
    fit, stripped_fit = micro_fit(tiny_tflites["int8"]), micro_fit(tmp_path / "int8.tflite")
    assert stripped_fit.runs and stripped_fit.arena_bytes == fit.arena_bytes
    np.testing.assert_array_equal(micro_outputs(tmp_path / "int8.tflite", x), micro_outputs(tiny_tflites["int8"], x))


def test_the_microcontroller_target_strips_every_file_it_makes_and_its_record_says_so(tiny_model, tiny_dataset,
                                                                                      calibration_pixels, tmp_path):
    from edgecompress.builder.measure import convert_and_measure
    from edgecompress.quantize import schemes
    from edgecompress.recipes.cache import StageCache

    assert target("mcu").strip_names and not target("cpu").strip_names
    cache = StageCache(tmp_path / "cache")
    kw = {"runs": 2, "warmup": 0}
    (named,), _ = convert_and_measure(tiny_model, [schemes.int8_full()], calibration_pixels, tiny_dataset, cache,
                                      "tiny", **kw)
    (stripped,), _ = convert_and_measure(tiny_model, [schemes.int8_full()], calibration_pixels, tiny_dataset, cache,
                                         "tiny", strip_names=True, **kw)
    assert stripped.size_bytes < named.size_bytes and stripped.accuracy == named.accuracy
    assert stripped.recipe["names_stripped"] and "names_stripped" not in named.recipe
    assert stripped.cache_path != named.cache_path  # two files, each under its own key


def test_strips_names_is_the_targets_or_the_users_choice():
    from edgecompress.builder.targets import strips_names

    assert strips_names("mcu") and strips_names("mcu", False) and strips_names("cpu", True)
    assert not strips_names("cpu")


@pytest.mark.slow
def test_build_edge_strip_names_makes_every_file_without_names_on_a_cpu_target(tmp_path):
    """`invoke build-edge --strip-names`: every file of the report is made without names, measured so."""
    import json

    from conftest import ROOT, run_invoke

    out = tmp_path / "edge"
    proc = run_invoke(["build-edge", "--recipe", "quantize-only", "--epochs", "1", "--runs", "5", "--strip-names",
                       "--out", str(out)], cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["artifacts"] and report["options"]["strip_names"] is True
    for a in report["artifacts"]:
        data = (out / f"{a['name']}.tflite").read_bytes()
        assert a["recipe"]["names_stripped"] and len(data) == a["size_bytes"]
        assert all(not t.name for t in ModelFile(data).graph.tensors)
