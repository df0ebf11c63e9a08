"""Per-layer precision chosen by measured sensitivity: which layers of a float32 `.tflite` take int4 weights and
which keep int8, under a share of the weights (`ConversionConfig.int4_share`).

Each weighted layer is made int4 alone, the rest int8 (LiteRT Quantizer recipes, `quantize.aeq`), and the file's
outputs on calibration samples are compared with the float32 file's. Its sensitivity is how much that layer
adds to the outputs' error (squared error over the float outputs' variance, beyond the all-int8 file's). The
least sensitive layers per weight take int4 until they hold at least the share; the rest keep int8. This is the
per-layer choice of NVIDIA ModelOpt's `auto_quantize` and HAWQ, measured by output error instead of a Hessian:
on the `resnet-letters` ResNet the first 3x3 convolution (648 weights) made two thirds of the all-int4 file's
output error, and keeping it (and the classifier) int8 cost 3,688 bytes (`tests/test_int4.py`;
`docs/results/int4.json`).

No labels are used: the calibration samples only, so the choice never sees the data a file is judged on.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)

MAX_PROBES = 64  # calibration samples each candidate file is run on


@dataclasses.dataclass(frozen=True)
class Layer:
    """A weighted op of the float file: the library's scope (its output tensor names), its weight count, and
    (once measured) the output error it adds at int4."""

    scope: str
    weights: int
    error: float | None = None

    @property
    def regex(self) -> str:
        return "^" + re.escape(self.scope) + "$"


def weighted_layers(float_model: bytes) -> list[Layer]:
    """The ops of `float_model` with a constant kernel of two or more dimensions, in graph order."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    model = fb.read_model(bytes(float_model))
    found = []
    for graph in model.subgraphs[:1]:
        for op in graph.operators:
            if len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            t = graph.tensors[op.inputs[1]]
            held = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            if held is not None and np.size(held) and t.shape is not None and len(t.shape) >= 2:
                found.append(Layer(fb.get_op_scope(op, graph.tensors), int(np.prod(t.shape))))
    return found


def choose(layers: list[Layer], share: float) -> list[Layer]:
    """The layers that take int4: the least output error per weight first, until they hold at least `share`
    of all the weights, a byte budget. This is the greedy answer to "the least error for at most these bytes"
    (ModelOpt's `auto_quantize` asks it in effective bits). A prefix of one order, so a larger share takes the
    same layers and more."""
    total = sum(layer.weights for layer in layers)
    chosen, held = [], 0
    for layer in sorted(layers, key=lambda layer: (layer.error / layer.weights, -layer.weights)):
        if held >= share * total - 1e-9:
            break
        chosen.append(layer)
        held += layer.weights
    return chosen


def outputs(data: bytes, probes: list[dict]) -> np.ndarray:
    """Every output of `data` on each probe (`{signature input: array}`), flattened and joined per probe."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(data))
    runner = interpreter.get_signature_runner()
    rows = []
    for p in probes:
        out = runner(**p)
        rows.append(np.concatenate([np.asarray(out[k], np.float64).reshape(-1) for k in sorted(out)]))
    return np.stack(rows)


def error(y: np.ndarray, reference: np.ndarray) -> float:
    """Squared error of `y` over the variance of `reference` (the float file's outputs) across the probes."""
    spread = float(((reference - reference.mean(0)) ** 2).sum()) or 1.0
    return float(((y - reference) ** 2).sum()) / spread


def measure(float_model: bytes, layers: list[Layer], make, probes: list[dict]) -> list[Layer]:
    """Each layer with the error it adds when `make(int4_layers)` (the file with those layers int4, the rest
    int8) makes it int4 alone."""
    if not probes:
        raise EdgeCompressError("Choosing int4 layers by sensitivity needs calibration samples; pass calibration "
                                "images (`--calibration DIR`) or drop `int4_share`.")
    reference = outputs(float_model, probes)
    base = error(outputs(make([]), probes), reference)
    logger.info("  measuring %d layers' int4 sensitivity on %d calibration samples", len(layers), len(probes))
    return [dataclasses.replace(layer, error=max(0.0, error(outputs(make([layer]), probes), reference) - base))
            for layer in layers]
