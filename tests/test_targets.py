"""`--target mcu`: only full-integer files TensorFlow Lite Micro runs ship, chosen by file bytes; a model with an
op TFLM lacks is refused before training, naming the op."""

import pytest

from edgecompress.builder.selection import Constraints, GateError, select
from edgecompress.builder.targets import TARGETS, target
from edgecompress.errors import EdgeCompressError


def _report():
    def art(name, q, acc, size, fit, **extra):
        return {"name": name, "quantization": q, "accuracy": acc, "size_bytes": size, "gzip_bytes": size // 2,
                "latency_ms": {"p50": 0.1}, "tflm": fit, **extra}
    ok = {"runs": True, "arena_bytes": 20_000}
    return {"baseline": "float32", "artifacts": [
        art("float32", "none", 0.90, 400_000, {"runs": True, "arena_bytes": 70_000}),
        art("dynamic", "dynamic", 0.90, 100_000, {"runs": False, "refused": "CONV_2D (node 2): Hybrid models are "
                                                                         "not supported on TFLite Micro."}),
        art("int4", "int4", 0.90, 50_000, {"runs": False, "refused": "FULLY_CONNECTED (node 5): ..."}),
        art("int8", "int8", 0.895, 101_000, ok),
        art("int8_selective", "int8", 0.899, 99_000, ok, float_layers=["conv1"]),
        art("student_int8", "int8", 0.893, 60_000, {"runs": True, "arena_bytes": 12_000})]}


def test_a_microcontroller_takes_the_smallest_full_integer_file_tflm_runs():
    r = _report()
    assert select(r, Constraints(max_accuracy_drop=1.0))["name"] == "int4"  # on a CPU, the smallest file
    assert select(r, Constraints(max_accuracy_drop=1.0, target="mcu"))["name"] == "student_int8"
    assert select(r, Constraints(max_accuracy_drop=0.6, target="mcu"))["name"] == "int8"  # selective: float inside
    assert select(r, Constraints(target="mcu"))["name"] == "student_int8"  # a target alone is enough to select
    assert Constraints(target="mcu").any and not Constraints().any
    with pytest.raises(GateError, match=r"--max-ram-kb 10: best 11.7 KiB of TFLM arena \(student_int8\)"):
        select(r, Constraints(max_ram_kb=10, target="mcu"))
    with pytest.raises(GateError, match=r"--target mcu: 4 of 6 files cannot ship for a microcontroller with "
                                        r"TensorFlow Lite Micro \(float32: none is not full-integer; dynamic: dynamic "
                                        r"is not full-integer; int4: int4 is not full-integer; \.\.\.\)"):
        select(r, Constraints(max_accuracy_drop=0.1, target="mcu"))


def test_a_target_is_named_from_a_list_and_chooses_by_file_bytes():
    assert set(TARGETS) == {"cpu", "mcu"} and target("mcu").tflm and target("mcu").schemes == ("int8",)
    with pytest.raises(EdgeCompressError, match=r"expected one of \['cpu', 'mcu'\] .* Received: target='gpu'"):
        Constraints(target="gpu")
    with pytest.raises(EdgeCompressError, match="--target mcu with --size gzip: .* chosen by file bytes. Drop --size"):
        Constraints(target="mcu", size="gzip")


def test_the_closed_loop_for_a_microcontroller_searches_full_integer_files_only():
    from edgecompress.search.space import load_space

    auto = load_space("auto")
    mcu = auto.for_build(None, None, "file", "mcu")
    assert set(mcu.quantize) == {"int8", "int8_per_tensor"} and not mcu.selective_int8 and auto.selective_int8
    names = [r["name"] for r in mcu.ladder]
    assert names[0] == "model" and not {"model-dynamic", "model-int4", "student-0.75-int4"} & set(names)
    assert all(r.get("choice", {}).get("quantize", "int8") in mcu.quantize for r in mcu.ladder)
    assert all(r.get("after") in (None, *names) for r in mcu.ladder)
    with pytest.raises(EdgeCompressError, match=r"no variant of the schemes \['int8'\] --target mcu needs"):
        auto.replace(quantize=("dynamic",), ladder=()).for_build(None, None, "file", "mcu")


def test_tflm_names_an_op_it_has_no_kernel_for():
    from edgecompress.lite.micro import _refusal

    # What tflite-micro printed for a model with a GELU activation (measured: `test_model_with_an_op_...`).
    said = "Didn't find op for builtin opcode 'GELU'\r\nFailed to get registration from op code GELU\n \r\n\nTFLM failed"
    assert _refusal(said) == "GELU: TensorFlow Lite Micro has no kernel for this op"


@pytest.mark.slow
def test_a_model_with_an_op_tflm_lacks_is_refused_before_training_naming_the_op():
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgecompress.builder.targets import check_model_for, tflm_view_of_int8
    from edgecompress.models.backend import keras

    def model(activation, name):
        inp = keras.Input((8, 8, 3), name="image")
        x = keras.layers.Activation(activation)(keras.layers.Conv2D(4, 3, padding="same")(inp))
        out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
        return keras.Model(inp, out, name=name)

    with pytest.raises(EdgeCompressError, match=r"--target mcu: TensorFlow Lite Micro cannot run model 'g' as int8: "
                                                r"GELU: TensorFlow Lite Micro has no kernel for this op"):
        check_model_for("mcu", model("gelu", "g"))
    with pytest.raises(EdgeCompressError, match=r"cannot run model 's' as int8: EXP \(node \d+\)"):
        check_model_for("mcu", model("softplus", "s"))
    fit = tflm_view_of_int8(model("relu", "r"))
    assert fit["runs"] and 0 < fit["arena_bytes"] < 16_000
    check_model_for("mcu", model("relu", "r"))  # runs: nothing said
    check_model_for("cpu", model("gelu", "g"))  # a CPU target asks nothing of TFLM
