"""Weights narrower than int8, through LiteRT Quantizer (PyPI `ai-edge-quantizer`): a float32 `.tflite` in, its
weights quantized to int4 (per channel, or per block of 32) with float or int8 activations, by a named recipe.

TensorFlow's converter stops at int8; LiteRT Quantizer works on the converted float file, needs only
ai-edge-litert, and runs in milliseconds. A recipe is data (a list of `{"regex", "operation", "op_config"}`
entries, the library's own format), named here by `RECIPES`; a scheme row (`schemes.Scheme.aeq_recipe`)
says which one it uses.

Example:

>>> small, kept = quantize(float32_bytes, "dynamic_wi4_afp32")  # int4 weights per channel, float compute
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import re
import warnings

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


def _library():
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise EdgeCompressError("int4 weights need LiteRT Quantizer: pip install 'ai-edge-quantizer>=0.10,<0.11' "
                                "(it comes with `edgecompress[train]`).") from None
    return quantizer, recipe


def _static_wi4_ai8(recipe):
    """int4 weights per channel, int8 activations (calibrated): the library's `static_wi8_ai8` at 4 weight bits."""
    entries = copy.deepcopy(recipe.static_wi8_ai8())
    for e in entries:
        e["op_config"]["weight_tensor_config"]["num_bits"] = 4
    return entries


def _static_wi4_ai8_tensorwise(recipe):
    """`static_wi4_ai8` with one scale per kernel: the only int4 kernel TensorFlow Lite Micro's FULLY_CONNECTED
    takes. No scheme uses it: TFLM unpacks the kernel to int8 in its arena, so the RAM grows by the largest
    kernel's values (`tests/test_micro.py`), which is what a microcontroller has least of."""
    entries = _static_wi4_ai8(recipe)
    for e in entries:
        e["op_config"]["weight_tensor_config"]["granularity"] = "TENSORWISE"
    return entries


# Recipe name -> a function of the library's `recipe` module that gives its entries.
RECIPES = {
    "dynamic_wi4_afp32": lambda recipe: recipe.dynamic_wi4_afp32(),  # int4 per channel, float compute
    "dynamic_wi4b32_afp32": lambda recipe: recipe.dynamic_wi4b32_afp32(),  # int4 per block of 32, float compute
    "static_wi4_ai8": _static_wi4_ai8,  # int4 per channel, int8 activations
    "static_wi4_ai8_tensorwise": _static_wi4_ai8_tensorwise,  # int4, one scale per kernel, int8 activations
    "static_wi8_ai8": lambda recipe: recipe.static_wi8_ai8(),  # int8 per channel, int8 activations
}


def recipe_entries(name: str) -> list:
    """The library's recipe `name` (`RECIPES`) as its list of entries."""
    if name not in RECIPES:
        raise EdgeCompressError(f"Unknown LiteRT Quantizer recipe {name!r}. Known: {sorted(RECIPES)}.")
    return RECIPES[name](_library()[1])


MAX_KEPT = 16  # layers kept at int8 before a recipe is given up as the wrong one for the model

# What a refusal names: the library's tensor ("... for tensor: NAME. Error: ..."), or LiteRT's op ("Node number 5
# (FULLY_CONNECTED) failed to prepare", "FULLY_CONNECTED (node 5): ...").
_TENSOR = re.compile(r"for tensor: (?P<name>[^\s]+?)\. Error: (?P<why>.*)", re.S)
_OP = re.compile(r"\b(?P<op>[A-Z][A-Z0-9_]{2,})\b(?: \(node \d+\)|\) failed)")
# XNNPACK's refusal of one int4 tensor of the file ("unsupported scale value (0.000000) in channel 723 for INT4
# tensor 6"): a block of a pruned kernel that is all zeros has a scale of 0.
_INT4_TENSOR = re.compile(r"(?P<why>unsupported [^;]*?)? for INT4 tensor (?P<index>\d+)")


@dataclasses.dataclass(frozen=True)
class Kept:
    """A layer a narrow recipe left at int8 weights, and why: `scope` is the library's tensor name (a regex of
    it) or `operation` a TFLite op every instance of which was kept."""

    scope: str | None
    operation: str
    reason: str

    def __str__(self) -> str:
        where = f"layer {self.scope}" if self.scope else f"every {self.operation}"
        return f"{where} kept at int8 weights ({self.reason})"


def _scopes(float_model: bytes, tensor: str) -> list[str]:
    """The library's scopes (an op's output tensor names, `;`-joined) of the ops that read or write `tensor`."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(bytes(float_model))
    found = []
    for graph in model.subgraphs:
        names = [t.name.decode("utf-8") for t in graph.tensors]
        for op in graph.operators:
            if any(i != -1 and names[i] == tensor for i in [*op.inputs, *op.outputs]):
                found.append(fb.get_op_scope(op, graph.tensors))
    return found or [tensor]


def _scoped(entry: dict, regex: str, operation: str = "*", bits: int | None = None) -> dict:
    """A copy of recipe `entry` for the ops `regex` and `operation` name, at `bits` channelwise weights when
    given; placed after the recipe's own entries, it wins for them (the library's last match)."""
    e = copy.deepcopy(entry)
    e["regex"], e["operation"] = regex, operation
    if bits is not None:
        e["op_config"]["weight_tensor_config"].update(num_bits=bits, granularity="CHANNELWISE")
    return e


def _exactly(scopes) -> str:
    """A recipe regex that matches these scopes and no other."""
    return "|".join("^" + re.escape(s) + "$" for s in scopes)


def _at_int8(float_model: bytes, entries: list, kept: Kept) -> dict:
    """An entry giving `kept`'s layer (or every op of its kind) int8 weights with the recipe's activations."""
    if kept.scope is None:
        return _scoped(entries[0], ".*", kept.operation, bits=8)
    return _scoped(entries[0], _exactly(_scopes(float_model, kept.scope)), bits=8)


def _writers(float_model: bytes, tensors) -> dict[str, list[str]]:
    """Each of `tensors` (op output names) -> the library's scopes of the ops that write it."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    graph = fb.read_model(bytes(float_model)).subgraphs[0]
    names = [t.name.decode("utf-8") for t in graph.tensors]
    found: dict[str, list[str]] = {t: [] for t in tensors}
    for op in graph.operators:
        for i in op.outputs:
            if i != -1 and names[i] in found:
                found[names[i]].append(fb.get_op_scope(op, graph.tensors))
    return found


def keep_float(float_model: bytes, tensors, representative_dataset) -> bytes:
    """int8 weights and activations (the library's `static_wi8_ai8`, calibrated on `representative_dataset`),
    except the ops that write `tensors`, kept in float (`no_quantize`): the selective int8 file, float input and
    output. TensorFlow's quantization debugger made it before, from its denylist of the same tensors."""
    scopes = _writers(float_model, tensors)
    missing = [t for t, found in scopes.items() if not found]
    if missing:
        raise EdgeCompressError(f"No op of the float32 file writes tensor(s) {missing} to keep in float.")
    entries = recipe_entries("static_wi8_ai8")
    keep = _scoped(entries[0], _exactly(s for found in scopes.values() for s in found))
    keep["algorithm_key"] = "no_quantize"
    return _quantize_once(float_model, "static_wi8_ai8", [*entries, keep], representative_dataset)


def _refused(error: str, data: bytes | None = None) -> Kept | None:
    """The layer an error names (the library's or LiteRT's; LiteRT's tensor index is read in `data`, the file
    it refused), or None when it names none."""
    m = _TENSOR.search(error)
    if m:
        return Kept(m["name"], "*", m["why"].strip().splitlines()[0])
    m = _INT4_TENSOR.search(error) if data is not None else None
    if m:
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

        tensors = fb.read_model(bytes(data)).subgraphs[0].tensors
        if int(m["index"]) < len(tensors):
            why = f"XNNPACK: {m['why'] or 'refused'} of its int4 weights"
            return Kept(tensors[int(m["index"])].name.decode("utf-8"), "*", why)
    m = _OP.search(error)
    if m:
        return Kept(None, m["op"], error.strip().splitlines()[0])
    return None


def quantize(float_model: bytes, name: str, representative_dataset=None, *,
             int4_share: float | None = None) -> tuple[bytes, list[Kept]]:
    """`float_model` (a float32 `.tflite`) quantized by recipe `name`, and the layers it kept at int8.

    A recipe with static activations is calibrated on `representative_dataset` (a generator function of `[x]`
    batches, as TensorFlow's converter takes it). Where the library cannot quantize a layer this narrow (a
    blockwise scale on a dimension not divisible by the block) or LiteRT has no kernel for the result (it is
    loaded and run once on zeros), that layer or op is kept at int8 weights and named in `Kept`; a refusal that
    names no layer raises `EdgeCompressError` with LiteRT's words."""
    entries = recipe_entries(name)
    if int4_share is not None:
        entries = _by_sensitivity(float_model, name, entries, representative_dataset, int4_share)
    kept: list[Kept] = []
    while True:
        try:
            data = _quantize_once(float_model, name, entries, representative_dataset)
        except EdgeCompressError:
            raise
        except Exception as e:  # noqa: BLE001 - the library's errors are many types
            said = f"{type(e).__name__}: {e}"
            layer = _refused(said)
            if layer is None or len(kept) >= MAX_KEPT or layer in kept:
                raise EdgeCompressError(f"LiteRT Quantizer could not apply recipe {name!r}: {said}") from None
        else:
            said = litert_refusal(data)
            if said is None:
                _say_left_float(name, data)
                return data, kept
            layer = _refused(said, data)
            if layer is None or len(kept) >= MAX_KEPT or layer in kept:
                raise EdgeCompressError(f"LiteRT cannot run the file recipe {name!r} made: {said}")
        logger.warning("  recipe %s: %s", name, layer)
        kept.append(layer)
        entries = [*entries, _at_int8(float_model, entries, layer)]


def _by_sensitivity(float_model: bytes, name: str, entries: list, representative_dataset, share: float) -> list:
    """`entries` made int8, then int4 for the layers `sensitivity.choose` picks for `share` of the weights."""
    from edgecompress.quantize import sensitivity

    if representative_dataset is None:
        raise EdgeCompressError(f"int4_share={share} chooses layers by their measured sensitivity and needs "
                                "calibration samples; pass calibration images (`--calibration DIR`).")
    base = [_scoped(e, e["regex"], e["operation"], bits=8) for e in entries]

    def narrow(layers):
        return [*base, *(_scoped(entries[0], layer.regex) for layer in layers)]

    _, probes = _signature_rows(float_model, representative_dataset, limit=sensitivity.MAX_PROBES)
    layers = sensitivity.measure(float_model, sensitivity.weighted_layers(float_model),
                                 lambda ls: _quantize_once(float_model, name, narrow(ls), None), probes)
    chosen = sensitivity.choose(layers, share)
    held = sum(layer.weights for layer in chosen) / max(1, sum(layer.weights for layer in layers))
    kept = sorted(set(layers) - set(chosen), key=lambda layer: -layer.error / layer.weights)
    logger.info("  int4 on %d of %d layers (%.0f%% of the weights); int8 kept for the most sensitive: %s", len(chosen),
                len(layers), 100 * held, ", ".join(layer.scope.split(";")[0] for layer in kept[:3]) or "none")
    return narrow(chosen)


def _say_left_float(name: str, data: bytes) -> None:
    """Log the kernels a recipe left in float32: the library skips an op its config does not cover (its
    blockwise int4 took a ResNet's fully connected layer and none of its 2D convolutions)."""
    from edgecompress.lite.reader import float_kernels

    left = float_kernels(data)
    if left:
        logger.warning("  recipe %s left %d kernel(s) in float32, which LiteRT Quantizer's config does not cover: "
                       "%s%s", name, len(left), ", ".join(left[:3]), ", ..." if len(left) > 3 else "")


def _quantize_once(float_model: bytes, name: str, entries: list, representative_dataset) -> bytes:
    quantizer, _ = _library()
    q = quantizer.Quantizer(bytes(float_model), entries)
    said = io.StringIO()
    # The library prints a summary of every file it writes, a calibration progress bar, and warnings about its
    # own debugging options: kept out of the build's output (the summary goes to the debug log).
    absl = logging.getLogger("absl")  # the library's "Serializing model..." at INFO, once per file
    level = absl.level
    absl.setLevel(max(level, logging.WARNING))
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if q.need_calibration:
            if representative_dataset is None:
                raise EdgeCompressError(f"LiteRT Quantizer recipe {name!r} quantizes activations and needs "
                                        "calibration images (`--calibration DIR`).")
            result = q.quantize(q.calibrate(_calibration(float_model, representative_dataset)))
        else:
            result = q.quantize()
    absl.setLevel(level)
    logger.debug("%s", said.getvalue().strip())
    return bytes(result.quantized_model)


def version() -> str:
    """The installed LiteRT Quantizer's version, for cache keys: another version may write other bytes."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("ai-edge-quantizer")
    except PackageNotFoundError:
        return "absent"


def litert_refusal(data: bytes) -> str | None:
    """Why LiteRT cannot load `data` and run it once on zeros (its own words), or None when it can.
    On the bundled student pruned to 75%, blockwise int4 gave all-zero blocks a scale of 0, and LiteRT refused
    the file."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=bytes(data))
        interpreter.allocate_tensors()
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interpreter.invoke()
    except (RuntimeError, ValueError) as e:
        return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return None


def _calibration(float_model: bytes, representative_dataset) -> dict:
    """The representative batches as the library takes them: `{signature: [{input name: batch}, ...]}`."""
    key, rows = _signature_rows(float_model, representative_dataset)
    return {key: rows}


def _signature_rows(float_model: bytes, representative_dataset, limit: int | None = None) -> tuple[str, list]:
    """(the file's signature, `{input name: batch}` of each representative batch): a batch of several inputs
    comes by name (`models.packed.split_representative`), one of one input as `[array]`."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=bytes(float_model)).get_signature_list()
    key = next(iter(signatures))
    names = signatures[key]["inputs"]
    rows = []
    for batch in representative_dataset():
        rows.append({n: batch[n] for n in names} if isinstance(batch, dict) else dict(zip(names, batch)))
        if limit is not None and len(rows) >= limit:
            break
    return key, rows
