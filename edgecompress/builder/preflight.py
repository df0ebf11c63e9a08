"""`invoke check-model`: what will go wrong, in seconds, before any training.

- layers tensorflow-model-optimization cannot prune, and those it cannot
  quantization-aware-train;
- ops that will not run as int8 under builtin int8 kernels (from a quick
  conversion with random calibration inputs: the file is read back, since the
  converter can silently leave ops in float), and ops TFLite cannot run at all;
- which layers XNNPACK's sparse inference could accelerate once pruned (it
  handles 1x1 convolutions; Dense layers and larger kernels stay dense).
"""

from __future__ import annotations

import logging

from edgecompress.configs import Features
from edgecompress.data.calibration import random_representative
from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


def check_model(model) -> dict:
    """Returns a JSON-ready dict of findings; `ok` is False when int8 will fail."""
    from edgecompress.recipes.registry import STAGES

    from edgecompress.quantize import schemes
    from edgecompress.quantize import convert
    from edgecompress.models.backend import keras
    from edgecompress.lite.reader import float_ops
    from edgecompress.lite.tasks import task
    from edgecompress.models.keras_io import input_preprocessing, model_task
    from edgecompress.techniques.support import clusterable, not_quantize_aware, unprunable

    spec = input_preprocessing(model)
    weighted = [layer for layer in model.layers if layer.weights]
    not_prunable = unprunable(model)
    float_anyway = {layer.name for layer in model.layers  # layers with nothing to quantize
                    if layer.__class__.__name__ in ("Flatten", "Dropout", "Reshape", "Softmax")}
    not_qat = [name for name in not_quantize_aware(model) if name not in float_anyway]
    sparse_ok = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
                 and not isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose))
                 and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)]
    dense_only = [layer.name for layer in weighted if layer.name not in sparse_ok]
    rep = random_representative(spec.input_shape)
    not_clusterable = [layer.name for layer in weighted if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
                       and not clusterable(layer)]
    what = task(model_task(model))
    result = {"model": model.name, "input": list(spec.input_shape), "params": int(model.count_params()),
              "input_kind": "features" if isinstance(spec, Features) else "image",
              **({"inputs": {n: list(shape) for n, shape in spec.inputs}} if getattr(spec, "inputs", ()) else {}),
              "task": {"name": what.name, "metric": what.metric, "from": "its shapes; value labels make a regression, "
                                                                         "and --task overrides"},
              "stages": {name: info.summary for name, info in sorted(STAGES.items())},
              "not_prunable": not_prunable, "not_clusterable": not_clusterable, "not_qat": not_qat, "xnnpack_sparse_layers": sparse_ok,
              "xnnpack_dense_layers": dense_only}
    try:
        data = convert.convert(model, schemes.int8_float_io(), rep)
        result["float_ops_under_int8"] = float_ops(data)
        result["unsupported_ops"] = []
    except EdgeCompressError as e:
        result["float_ops_under_int8"] = None
        result["unsupported_ops"] = [str(e)]
    result["ok"] = not result["unsupported_ops"] and not result["float_ops_under_int8"]
    return result


def format_findings(r: dict) -> str:
    def names(xs):
        return ", ".join(xs) if xs else "none"

    several = r.get("inputs")
    said = (f"inputs {', '.join(f'{n} {shape}' for n, shape in several.items())} (one packed row of {r['input'][0]} "
            "numbers in training; the files take each)" if several else f"input {r['input']} ({r.get('input_kind', 'image')})")
    lines = [f"Model {r['model']}: {said}, {r['params']:,} parameters"]
    if r.get("task"):
        lines.append(f"  task: {r['task']['name']}, judged by {r['task']['metric']} (from {r['task']['from']})")
    t = r.get("translation") or {}
    if t.get("source") == "keras3":
        from edgecompress.models.translate import rebuilt_summary

        lines.append("  Keras 3 file: translated to tf-keras layer by layer" + rebuilt_summary(t.get("decomposed")))
    if t.get("flattened"):
        lines.append(f"  nested models flattened so every stage reaches their layers: {names(t['flattened'])}")
    lines.append(f"  pruning (tfmot): {'all layers supported' if not r['not_prunable'] else 'cannot prune ' + names(r['not_prunable'])}")
    if "not_clusterable" in r:
        lines.append(f"  clustering (tfmot): {'all Conv2D and Dense layers supported' if not r['not_clusterable'] else 'cannot cluster ' + names(r['not_clusterable'])}")
    lines.append(f"  quantization-aware training: {'all layers supported' if not r['not_qat'] else 'not supported for ' + names(r['not_qat'])}")
    if r["unsupported_ops"]:
        lines.append(f"  TFLite: {r['unsupported_ops'][0]}")
    elif r["float_ops_under_int8"]:
        lines.append(f"  int8: ops without int8 kernels stay float: {names(r['float_ops_under_int8'])}; "
                     "the full-integer `int8` variant will fail, use `int8_float_io`")
    else:
        lines.append("  int8: every op has an int8 kernel")
    lines.append(f"  XNNPACK sparse inference (1x1 convolutions) could use: {names(r['xnnpack_sparse_layers'])}; "
                 f"stays dense: {names(r['xnnpack_dense_layers'])}")
    if r.get("stages"):
        lines.append("  recipe stages (edgecompress.recipes.registry): " + "; ".join(f"{k}: {v}" for k, v in r["stages"].items()))
    return "\n".join(lines)
