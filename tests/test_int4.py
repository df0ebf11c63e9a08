"""int4 weights through LiteRT Quantizer (`quantize.aeq`): schemes beside int8, smaller files, and the layers a
narrow recipe cannot take kept at int8 and named."""

import gzip
import logging

import numpy as np
import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.quantize import aeq
from edgecompress.quantize.schemes import ConversionConfig, Quantization, conversion, scheme

INT4 = 17  # TensorType INT4 in the .tflite schema


def test_int4_schemes_are_rows_with_a_litert_quantizer_recipe():
    for name, recipe in [("int4", "dynamic_wi4_afp32"), ("int4_block32", "dynamic_wi4b32_afp32"),
                         ("int4_int8", "static_wi4_ai8")]:
        row = scheme(name)
        assert row.aeq_recipe == recipe and recipe in aeq.RECIPES and conversion(name).quantization is Quantization(name)
        entries = aeq.recipe_entries(recipe)
        assert {e["op_config"]["weight_tensor_config"]["num_bits"] for e in entries} == {4}
    assert scheme("int4_int8").needs_calibration and not scheme("int4").needs_calibration
    assert scheme("int8").aeq_recipe is None  # the converter's own schemes stay the converter's
    with pytest.raises(EdgeCompressError, match=r"Unknown LiteRT Quantizer recipe 'int3'. Known: \['dynamic_wi4"):
        aeq.recipe_entries("int3")


@pytest.mark.parametrize("said,scope,op", [
    # The library's words when a block does not divide a dimension (measured on the tiny teacher's fc1).
    ("ValueError: Failed to get quantization parameters for tensor: teacher/fc1/MatMul. Error: Quantized dimension "
     "784 in tensor shape (32, 784) is not divisible by block size 32.", "teacher/fc1/MatMul", "*"),
    # LiteRT's, when it has no kernel for what the recipe made.
    ("Node number 5 (FULLY_CONNECTED) failed to prepare.", None, "FULLY_CONNECTED"),
    ("FULLY_CONNECTED (node 5): Input type: FLOAT32 with filter type: INT4 not supported.", None, "FULLY_CONNECTED"),
])
def test_a_refusal_names_the_layer_kept_at_int8(said, scope, op):
    kept = aeq._refused(said)
    assert kept.scope == scope and kept.operation == op and "kept at int8 weights" in str(kept)
    assert aeq._refused("Invoke failed: something else") is None  # nothing named: the recipe is refused whole


def test_the_least_sensitive_layers_per_weight_take_int4_up_to_the_share():
    from edgecompress.quantize.sensitivity import Layer, choose

    rng = np.random.default_rng(0)
    for _ in range(200):  # seeded: the choice holds at most the share, and no kept layer is cheaper per weight
        layers = [Layer(f"l{i}", int(rng.integers(1, 5000)), float(rng.exponential())) for i in range(12)]
        share = float(rng.uniform(0.05, 1.0))
        chosen = choose(layers, share)
        total = sum(layer.weights for layer in layers)
        held = sum(layer.weights for layer in chosen)
        assert held >= share * total - 1e-6  # the byte budget is met...
        assert held - chosen[-1].weights < share * total  # ...by no more layers than it takes
        kept = [layer for layer in layers if layer not in chosen]
        worst = max(layer.error / layer.weights for layer in chosen)
        assert all(k.error / k.weights >= worst for k in kept)  # a prefix: every kept layer costs more per weight
        assert set(chosen) <= set(choose(layers, min(1.0, share + 0.2)))  # a larger share takes more, never fewer
    # What it is for: a small, sensitive first layer keeps int8 while the large tolerant ones take int4.
    layers = [Layer("conv1", 648, 0.010), Layer("big", 82944, 0.0002), Layer("fc", 960, 0.0016)]
    assert [layer.scope for layer in choose(layers, 0.5)] == ["big"]
    assert [layer.scope for layer in choose(layers, 0.99)] == ["big", "fc"]  # conv1 keeps int8
    assert choose(layers, 1.0) == sorted(layers, key=lambda layer: layer.error / layer.weights)


def test_a_share_is_for_int4_and_a_number_in_0_1():
    v = conversion("int4_mixed75")
    assert v.int4_share == 0.75 and ConversionConfig.from_dict(v.to_dict()) == v
    assert "int4_share" not in conversion("int4").to_dict()  # a variant without it keeps its cache key
    with pytest.raises(EdgeCompressError, match=r"`int4_share` .* in \(0, 1\]. Received: quantization='int8', "
                                                r"int4_share=0.5"):
        ConversionConfig("x", "int8", int4_share=0.5)
    with pytest.raises(EdgeCompressError, match=r"int4_share=1.5"):
        ConversionConfig("x", "int4", int4_share=1.5)


def _tensor_types(data: bytes) -> set:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(data)
    held = {i for i, b in enumerate(model.buffers) if b.data is not None and np.size(b.data)}
    return {t.type for g in model.subgraphs for t in g.tensors if t.buffer in held}  # of the constant tensors


@pytest.mark.slow
def test_int4_files_are_smaller_than_int8_run_on_litert_and_keep_top1(tiny_model, tiny_dataset, calibration_pixels,
                                                                      tmp_path, caplog):
    from edgecompress.data.calibration import representative_dataset
    from edgecompress.data.preprocessing import to_model_input
    from edgecompress.lite import micro
    from edgecompress.lite.evaluation import evaluate_tflite
    from edgecompress.quantize import convert

    rep = representative_dataset(calibration_pixels, tiny_dataset.preprocessing)
    x = to_model_input(tiny_dataset.x_test, tiny_dataset.preprocessing)
    keras_pred = tiny_model.predict(x, verbose=0).argmax(-1)
    files, scores = {}, {}
    with caplog.at_level(logging.WARNING, logger="edgecompress.quantize.aeq"):
        for name in ("float32", "dynamic", "int8", "int4", "int4_int8", "int4_block32"):
            files[name] = convert.write_tflite(convert.convert(tiny_model, conversion(name), rep), tmp_path, name)
            scores[name], _ = evaluate_tflite(files[name], x, tiny_dataset.y_test, reference=keras_pred)
    size = {n: p.stat().st_size for n, p in files.items()}
    # Measured on this model: int4 17,560 B against int8's 32,136 (1.83x) and dynamic's 31,888.
    assert size["int4"] * 1.7 < size["int8"] and size["int4"] * 1.7 < size["dynamic"], size
    assert size["int4_int8"] * 1.6 < size["int8"], size
    assert len(gzip.compress(files["int4"].read_bytes())) < len(gzip.compress(files["int8"].read_bytes()))
    assert INT4 in _tensor_types(files["int4"].read_bytes()) and INT4 in _tensor_types(files["int4_int8"].read_bytes())
    for name in ("int4", "int4_int8"):  # one weight rounding of a 2-epoch model: close to float (measured 2-3 points)
        assert scores[name]["accuracy"] >= scores["float32"]["accuracy"] - 0.06, scores
        assert scores[name]["agreement"] >= 0.85, scores
    # fc1 reads 784 values per unit, not a multiple of 32: that layer was kept at int8 and named; the rest int4.
    said = [r.getMessage() for r in caplog.records]
    assert any("layer teacher/fc1/MatMul kept at int8 weights" in m and "not divisible by block size 32" in m
               for m in said), said
    assert INT4 in _tensor_types(files["int4_block32"].read_bytes())
    # The library's blockwise config covers no 2D convolution: it leaves them float32, and the log says so.
    assert any("dynamic_wi4b32_afp32 left 2 kernel(s) in float32" in m and "CONV_2D" in m for m in said), said
    assert scores["int4_block32"]["agreement"] >= 0.85, scores
    # By sensitivity: int8 in the layers int4 hurts most per weight, int4 in the rest up to the share.
    with caplog.at_level(logging.INFO, logger="edgecompress.quantize.aeq"):
        mixed = convert.convert(tiny_model, conversion("int4_mixed50"), rep)
    said = [r.getMessage() for r in caplog.records if "int4 on" in r.getMessage()]
    assert said and "of 4 layers" in said[-1] and "int8 kept for the most sensitive" in said[-1], said
    assert size["int4"] < len(mixed) < size["dynamic"], (len(mixed), size)
    assert INT4 in _tensor_types(mixed)
    # TFLM has no int4 kernel: the view names the op, as it does for a hybrid file.
    fit = micro.micro_fit(files["int4_int8"])
    assert not fit.runs and fit.refused.startswith("FULLY_CONNECTED"), fit
    # The reader unpacks int4 (two to a byte): each kernel dequantizes to the float file's within half a step.
    from edgecompress.lite.reader import ModelFile, unique_weights, weight_sparsity

    f4, f32 = (ModelFile(files[n].read_bytes()) for n in ("int4", "float32"))
    ref = {c[0]: c[2] for c in map(f32.constant, range(len(f32.graph.tensors))) if c is not None}
    checked = 0
    for i, dtype in enumerate(f4.dtypes):
        c = f4.constant(i)
        if dtype != "int4" or c is None:
            continue
        name, q, v = c
        shape = [1] * v.ndim
        shape[q["quantized_dimension"]] = -1
        step = q["scales"].reshape(shape)
        assert v.min() >= -8 and v.max() <= 7 and np.all(np.abs(v * step - ref[name]) <= step / 2 + 1e-6), name
        checked += 1
    assert checked >= 3
    assert unique_weights(files["int4"].read_bytes())["max_per_channel"] <= 16
    assert 0 <= weight_sparsity(files["int4"].read_bytes())["overall"] < 0.5


@pytest.mark.slow
def test_a_pruned_block_of_zeros_keeps_its_layer_at_int8_where_xnnpack_refuses_a_zero_int4_scale(tiny_model, tmp_path,
                                                                                                 caplog):
    """A block of 32 weights that pruning left all zero gets a scale of 0 from blockwise int4, and XNNPACK refuses
    the file ("unsupported scale value (0.000000) in channel N for INT4 tensor M"). The layer that tensor belongs
    to is kept at int8 and named; the file runs (it failed the whole variant on the bundled student before)."""
    from edgecompress.models.backend import keras
    from edgecompress.quantize import convert

    model = keras.models.clone_model(tiny_model)
    model.set_weights(tiny_model.get_weights())
    dense = [layer for layer in model.layers if layer.get_weights() and layer.get_weights()[0].ndim == 2
             and layer.get_weights()[0].shape[0] % 32 == 0]
    assert dense, [layer.name for layer in model.layers]
    kernel, *rest = dense[-1].get_weights()
    kernel[:, 0] = 0  # every input weight of one output unit: all its blocks of 32 are zero
    dense[-1].set_weights([kernel, *rest])
    float_file = convert.convert(model, conversion("float32"))
    with caplog.at_level(logging.WARNING, logger="edgecompress.quantize.aeq"):
        data, kept = aeq.quantize(float_file, "dynamic_wi4b32_afp32")
    assert aeq.litert_refusal(data) is None
    assert [k.scope.split("/")[1] for k in kept if k.scope and "unsupported scale value" in k.reason] == [dense[-1].name]
    assert any(f"{dense[-1].name}/MatMul kept at int8 weights (XNNPACK: unsupported scale value" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
