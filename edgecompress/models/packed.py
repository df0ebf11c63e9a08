"""Several inputs as one packed row, several outputs as one packed output: the layers, and the layouts they hold.

A model of several inputs is opened as a model of one: its input is the packed row (`lite.inputs`), and its
first layers are, for each input, `Reshape` to (width, 1), `Cropping1D` to the input's numbers, `Reshape` to
its shape. A model of several outputs measured each ends, likewise, in one `Reshape` per output and a
`Concatenate` (`pack_outputs`; `lite.tasks.SeveralOutputs` cuts the row apart). These layers hold no weights,
every stage and tfmot's wrappers pass them by, and the layouts are read back from them (`layout`,
`output_layout`), so a stage model saved and loaded again still says what it holds. Conversion cuts them off
again (`translate.unpacked`): a `.tflite` file takes the user's inputs, each with its own quantization, and
gives the user's outputs.
"""

from __future__ import annotations

from edgecompress.lite import inputs

PACKED_INPUT = "packed_inputs"
_ROW = "packed_row"
_CROP = "unpack_crop_"
_SHAPE = "unpack_"


def row_width(layout) -> int:
    """How many numbers a packed row of `layout` holds."""
    return sum(inputs.width(s) for _, s in layout)


def unpack(k, row, layout, name=lambda n: n) -> list:
    """The tensors of each input of `layout`, cut from the packed tensor `row` (N, width) with layers of the
    Keras module `k`; `name` makes each wanted layer name unique in the graph being built."""
    total = row_width(layout)
    column = k.layers.Reshape((total, 1), name=name(_ROW))(row)
    out, start = [], 0
    for input_name, shape in layout:
        end = start + inputs.width(shape)
        cut = k.layers.Cropping1D((start, total - end), name=name(_CROP + input_name))(column)
        out.append(k.layers.Reshape(shape, name=name(_SHAPE + input_name))(cut))
        start = end
    return out


def layout(model) -> tuple:
    """The `(name, shape)` layout of the packed row `model` takes, read from its unpacking layers; `()` for a
    model of one input of its own."""
    if len(model.inputs) != 1:
        return ()
    crops = [layer for layer in model.layers
             if type(layer).__name__ == "Cropping1D" and layer.name.startswith(_CROP)]
    if not crops or not any(layer.name == _ROW for layer in model.layers):
        return ()
    by_name = {layer.name: layer for layer in model.layers}
    parts = []
    for crop in crops:
        input_name = crop.name[len(_CROP):]
        shaped = by_name.get(_SHAPE + input_name)
        if shaped is None:
            return ()
        parts.append((int(crop.cropping[0]), input_name, tuple(int(d) for d in shaped.target_shape)))
    return inputs.check_layout([(n, s) for _, n, s in sorted(parts)])


def cut_layers(model) -> dict:
    """The name of each input of a packed `model` by the name of the `Reshape` layer that makes its tensor:
    what `translate.unpacked` replaces with the input itself."""
    return {_SHAPE + n: n for n, _ in layout(model)}


PACKED_OUTPUT = "packed_outputs"
_OUT = "pack_out_"


def pack_outputs(k, tensors, names, name=lambda n: n):
    """One tensor of a model's several outputs: each flattened (`Reshape`), then one after the other
    (`Concatenate`), in order, with layers of the Keras module `k`. A model of several outputs trains on it as
    one output (`lite.tasks.SeveralOutputs` cuts it apart for its losses and metrics)."""
    flat = [k.layers.Reshape((inputs.width(t.shape[1:]),), name=name(_OUT + n))(t) for t, n in zip(tensors, names)]
    return k.layers.Concatenate(name=name(PACKED_OUTPUT))(flat)


def output_layout(model) -> tuple:
    """The `(name, shape)` of each output a packed `model` (`pack_outputs`) holds in its one output, in order;
    `()` for a model of one output of its own."""
    last = model.layers[-1] if model.layers else None
    if last is None or last.name != PACKED_OUTPUT or type(last).__name__ != "Concatenate":
        return ()
    out = []
    for t in last.input:
        history = t._keras_history
        layer = getattr(history, "layer", None) or getattr(history, "operation", None)
        if not layer.name.startswith(_OUT):
            return ()
        out.append((layer.name[len(_OUT):], tuple(int(d) for d in layer.input_shape[1:])))
    return tuple(out)


def output_tensors(model) -> list:
    """The tensors of each output of a packed `model`, before they were flattened, in order."""
    return [model.get_layer(_OUT + n).input for n, _ in output_layout(model)]


def cut_output_layers(model) -> list:
    """The names of the layers `translate.unpacked` cuts off a packed `model`'s end."""
    return [_OUT + n for n, _ in output_layout(model)] + ([PACKED_OUTPUT] if output_layout(model) else [])


def split_representative(layout_, representative_dataset):
    """A converter's representative dataset for the unpacked model: each packed `[row]` it yields, cut into
    one array per input (`lite.inputs.split`) and given by name, `{input: array}`, which the converter's
    calibrator matches to the file's inputs whatever their order. `None` stays `None`."""
    if representative_dataset is None or not layout_:
        return representative_dataset
    shapes = [s for _, s in layout_]

    def gen():
        for batch in representative_dataset():
            yield dict(zip([n for n, _ in layout_], inputs.split(batch[0], shapes)))

    return gen


def in_order(named_dataset, order):
    """A dataset of `{input: array}` (`split_representative`) as lists in `order`, the file's input order:
    what TFLite's quantization debugger takes (it sets inputs by position only)."""
    def gen():
        for sample in named_dataset():
            yield [sample[n] for n in order] if isinstance(sample, dict) else sample

    return gen


def file_input_name(tensor_name: str) -> str:
    """The Keras input name a converted file's input tensor carries (`serving_default_image:0` -> `image`)."""
    name = tensor_name.split(":", 1)[0]
    return name[len("serving_default_"):] if name.startswith("serving_default_") else name
