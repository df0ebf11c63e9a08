"""A `.tflite` file without the strings no kernel reads: flash holds fewer bytes, the kernels the same.

The converter names every tensor after the Keras layers and ops it came from ("ds_cnn_1/depthwise_conv2d_3/
depthwise;..."), and writes the subgraph's name, a description and the signature defs. On a small file they
are a large share: on MLPerf Tiny's keyword spotter as a 0.5-wide int8 student, 4,728 of its 17,080 bytes
(measured on the file `build/tiny-kws-mcu` made; `tests/test_strip.py` asserts that at least the names' bytes
go and that LiteRT and TFLM compute the same). `strip_names` is TensorFlow Lite's own
`strip_strings` (ai-edge-litert's `tools.flatbuffer_utils`, TensorFlow-free): the tensor names, the
subgraph's name, the description and the signature defs go; the op codes, the metadata and every buffer stay.

What goes with them: LiteRT's signature runner (`get_signature_runner`, Android's `runSignature`) needs the
signature defs, and a profile or a layer's sparsity is named by tensor index. `Interpreter.run` and
TensorFlow Lite Micro read inputs and outputs by position, so the `mcu` target (`builder.targets`) strips
every file it makes, and `cpu` keeps them unless the build asks (`--strip-names`).

Example:

>>> small = strip_names(Path("int8.tflite").read_bytes())
"""

from __future__ import annotations

import logging

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


def strip_names(data: bytes) -> bytes:
    """`data` (a `.tflite` file) without its tensor names, subgraph names, description and signature defs."""
    try:
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        raise EdgeCompressError("Stripping a .tflite file's names needs ai-edge-litert's flatbuffer tools: "
                                "pip install 'edgecompress[litert]'.") from None
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    if any((b.offset or 0) > 1 for b in model.buffers):  # weights past the flatbuffer (a file over 2 GB)
        logger.warning("A .tflite file with weights past its flatbuffer (over 2 GB) keeps its names: rewriting "
                       "it would drop them")
        return data
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
