"""Reading a Keras model's graph, in either library (Keras 3 or tf-keras): which library made it, its nodes in
order with their arguments, its inputs' and outputs' names, nested sub-models. `translate` rebuilds from this.
"""

from __future__ import annotations


from edgecompress.errors import EdgeCompressError


def is_keras3(model) -> bool:
    return type(model).__module__.startswith("keras.") or type(model).__module__ == "keras"


def is_model(op) -> bool:
    return hasattr(op, "layers") and (hasattr(op, "_nodes_by_depth") or type(op).__name__ == "Sequential")


def is_sequential(op) -> bool:
    return type(op).__name__ == "Sequential"


def has_nested(model) -> bool:
    return any(is_model(layer) for layer in model.layers)


def nodes(model, keras3: bool):
    """Yields (operation, args, kwargs, outputs) in topological order; InputLayer nodes skipped."""
    if is_sequential(model):
        # A Sequential chains its layers; the caller maps model.inputs[0] first.
        prev = model.inputs[0]
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            out = layer.output if not is_model(layer) else layer.outputs[0]
            yield layer, (prev,), {}, [out]
            prev = out
        return
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if keras3:
                op, args, kwargs, outs = node.operation, node.arguments.args, node.arguments.kwargs, node.output_tensors
            else:
                if node.is_input:
                    continue
                op, args, kwargs = node.layer, node.call_args, node.call_kwargs
                outs = node.outputs if isinstance(node.outputs, (list, tuple)) else [node.outputs]
            if type(op).__name__ == "InputLayer":
                continue
            yield op, tuple(args), dict(kwargs or {}), list(outs)


def is_tensor(x) -> bool:
    return type(x).__name__ == "KerasTensor"


def map_args(obj, tensors):
    """Replaces source KerasTensors in a nested structure by their translations."""
    if is_tensor(obj):
        if id(obj) not in tensors:
            raise EdgeCompressError("Cannot translate the model: a layer reads a tensor that is not computed from "
                                    "the model's inputs (a constant or a second input). Rebuild it with built-in layers.")
        return tensors[id(obj)]
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_args(x, tensors) for x in obj)
    if isinstance(obj, dict):
        return {k: map_args(v, tensors) for k, v in obj.items()}
    return obj


def output_names(model) -> list[str]:
    """The names of `model`'s outputs, the layers that make them: a Keras 3 Sequential model has no
    `output_names` (Functional models of both Kerases do), so they are read from each output's history
    (`operation` in Keras 3, `layer` in tf-keras)."""
    names = getattr(model, "output_names", None)
    return list(names) if names else made_by(model.outputs)


def input_names(model) -> list[str]:
    """The names of `model`'s inputs, their `InputLayer`s': what a packed row's layout and the data's
    `x_train/<name>` arrays are named after."""
    return made_by(model.inputs)


def made_by(tensors) -> list[str]:
    """The names of the layers that made `tensors`, from each one's history (`operation` in Keras 3, `layer`
    in tf-keras)."""
    out = []
    for t in tensors:
        history = t._keras_history
        op = getattr(history, "operation", None) or getattr(history, "layer", None)
        out.append(op.name)
    return out


def check_single_io(model, where, *, several_inputs: bool = False, several_outputs: bool = False):
    """Refuses a model of several outputs (unless `several_outputs`), or (unless `several_inputs`: a whole
    model, which is packed) of several inputs, naming them and the fix (the one place that says so)."""
    if len(model.inputs) != 1 and not several_inputs:
        raise EdgeCompressError(
            f"{where} has {len(model.inputs)} inputs ({', '.join(input_names(model))}); edgecompress follows "
            "several inputs on the whole model only, not on a nested sub-model. Build the model without the "
            "sub-model, calling its layers on the inputs directly.")
    if len(model.outputs) != 1 and not several_outputs:
        raise EdgeCompressError(
            f"{where} has {len(model.outputs)} outputs ({', '.join(output_names(model))}); edgecompress builds "
            "models with one output, which it measures (class scores, a reconstruction or regression values). "
            "Pass `--output NAME` to build one of them (the first by default), or export the output to ship as "
            "its own model (`keras.Model(model.input, model.get_layer(NAME).output)`).")


def is_keras3_module(mod) -> bool:
    return mod.__name__ == "keras"
