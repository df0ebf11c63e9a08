"""Which layers does int8 hurt, and what does keeping them in float cost?

Uses TFLite's quantization debugger (`tf.lite.experimental.QuantizationDebugger`)
to measure each quantized op's output error against float and ranks the layers
by error relative to their quantization step; the "selective" int8 files that
keep the worst N in float are LiteRT Quantizer's (`quantize.aeq.keep_float`).

Note: a converter that the debugger has used returns an unquantized model
from `convert()`; every conversion here uses a fresh converter.
"""

from __future__ import annotations

import logging

from edgecompress.lite import tasks
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


def _converter(model, rep):
    """A fresh int8 converter of `model` and the representative dataset that fits its file (a packed model's
    rows cut into its inputs: `models.packed`), which the debugger also runs the file on."""
    from edgecompress.models import packed
    from edgecompress.models.backend import tf
    from edgecompress.quantize.rewrites import converter_of

    layout = packed.layout(model)
    c = converter_of(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep = packed.split_representative(layout, rep)
    if layout:  # the debugger sets inputs by position: the order the converter gives them, read off a float file
        order = [packed.file_input_name(d["name"]) for d in _input_details(converter_of(model).convert())]
        rep = packed.in_order(rep, order)
    return c, rep


def _input_details(data: bytes) -> list:
    from edgecompress.lite.runtime import make_interpreter

    return make_interpreter(model_content=data, use_xnnpack=False).get_input_details()


def layer_errors(model, rep) -> list[dict]:
    """Per-op int8 error, worst first.

    Each entry: `tensor` (the op's output tensor name, which contains the
    Keras layer names fused into it), `op`, `rmse`, `scale` and
    `rmse_over_scale` (error in units of one quantization step; above about
    0.3 is a layer worth keeping in float).
    """
    import io
    import warnings

    from edgecompress.models.backend import tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converter, rep = _converter(model, rep)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=rep)
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    lines = buf.getvalue().strip().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        parts = line.split(",", len(header) - 1)
        r = dict(zip(header, parts))
        scale = float(r["scale"]) or 1.0
        rmse = float(r["mean_squared_error"]) ** 0.5
        rows.append({"tensor": r["tensor_name"], "op": r["op_name"], "index": int(r["tensor_idx"]), "rmse": rmse,
                     "scale": scale, "rmse_over_scale": rmse / scale})
    return sorted(rows, key=lambda r: -r["rmse_over_scale"])


def selective_int8(model, rep, tensors) -> bytes:
    """int8 with the ops producing `tensors` kept in float (float input and output): LiteRT Quantizer's int8
    recipe on the float32 file, those ops left unquantized (`quantize.aeq.keep_float`)."""
    from edgecompress.models import packed
    from edgecompress.quantize import aeq
    from edgecompress.quantize.rewrites import converter_of

    if not tensors:
        raise EdgeCompressError("selective_int8 needs at least one tensor to keep in float.")
    return aeq.keep_float(converter_of(model).convert(), tensors,
                          packed.split_representative(packed.layout(model), rep))


def tensors_of_layers(model, rep, layers) -> list[str]:
    """The debugger's output tensors of the ops the Keras `layers` became.

    Raises:
        EdgeCompressError: for a name that is not a layer of `model` (the
            valid ones are listed), or a layer that left no quantized op of
            its own (folded into another).
    """
    names = [layer.name for layer in model.layers]
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise EdgeCompressError(f"Received an invalid value for `float_layers`: {unknown} are not layers of model "
                                f"{model.name!r}. Its layers: {names}.")
    errors = layer_errors(model, rep)
    tensors = []
    for name in layers:
        mine = [e["tensor"] for e in errors if name in layers_of(e["tensor"], model)]
        if not mine:
            raise EdgeCompressError(f"Received an invalid value for `float_layers`: layer {name!r} left no quantized "
                                    "op of its own in the .tflite (it was folded into another). Name the layer it "
                                    "was fused with instead.")
        tensors += [t for t in mine if t not in tensors]
    return tensors


def layers_of(tensor: str, model) -> list[str]:
    """Keras layer names that appear in a (possibly fused) TFLite tensor name."""
    parts = {p for chunk in tensor.split(";") for p in chunk.split("/")}
    return [layer.name for layer in model.layers if layer.name in parts]


def find_float_layers(model, rep, x_val, y_val, *, max_drop: float, float_accuracy: float, max_layers: int = 4,
                 task: str = "classification") -> dict:
    """Keeps the last k weighted layers in float, for the smallest k that meets `max_drop`.

    The debugger's per-layer ranking is reported, but not followed blindly:
    a layer that ruins its output range (one huge channel) shows a small error
    relative to its own coarse step, and its consumer gets the blame. The
    tensors between the layers kept in float must stay float, so the layers
    kept are a contiguous tail of the graph, where int8 error accumulates.
    Each candidate is measured with the interpreter on (x_val, y_val).

    Returns {"data", "float_layers", "accuracy", "tried", "errors"}; `data`
    is None when no k up to `max_layers` meets `max_drop`.
    """
    import tempfile
    from pathlib import Path

    from edgecompress.lite.evaluation import evaluate_tflite

    from edgecompress.quantize.rewrites import apply
    from edgecompress.quantize.schemes import scheme

    model = apply(model, scheme("int8").rewrites)  # the int8 file's graph: the layers kept in float are its own
    errors = layer_errors(model, rep)
    weighted = [e for e in _in_graph_order(errors) if e["op"] in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
                                                                   "CONV_1D")]
    tried, best = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1, min(max_layers, len(weighted)) + 1):
            tail = weighted[-k:]
            # keep everything from the first kept layer to the output in float
            start = _in_graph_order(errors).index(tail[0])
            keep = [e["tensor"] for e in _in_graph_order(errors)[start:]]
            data = selective_int8(model, rep, keep)
            path = Path(tmp) / f"k{k}.tflite"
            path.write_bytes(data)
            acc = evaluate_tflite(path, x_val, y_val, task=task)[0]["accuracy"]
            layers = sorted({name for e in tail for name in layers_of(e["tensor"], model)})
            tried.append({"k": k, "float_layers": layers, "accuracy": acc, "size_bytes": len(data)})
            logger.info("  keeping %s in float: %s", ", ".join(layers), tasks.task(task).says(acc))
            if float_accuracy - acc <= max_drop:
                best = {"data": data, "float_layers": layers, "accuracy": acc}
                break
    return {**(best or {"data": None, "float_layers": [], "accuracy": None}), "tried": tried,
            "errors": [dict(e, layers=layers_of(e["tensor"], model)) for e in errors]}


def _in_graph_order(errors):
    """The debugger's rows in the order of the graph (its tensor indices grow along it)."""
    return sorted(errors, key=lambda e: e.get("index", 0))
