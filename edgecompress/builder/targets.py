"""What a build ships for: a target is the runtime the selected file must run on and the schemes it may use.

- `cpu` (the default): a phone's or a board's CPU with LiteRT; any scheme.
- `mcu`: a microcontroller with TensorFlow Lite Micro. Only full-integer files (`int8`) that TFLM's interpreter
  runs (`lite.micro`) can be selected, by file bytes (what flash holds), under `--max-ram-kb` (its arena). Every
  file is made without the names no kernel reads (`lite.strip`). The model's int8 file is tried on TFLM
  before anything is trained, so an op TFLM lacks is named in seconds.

Example:

>>> target("mcu").admits({"quantization": "int8", "tflm": {"runs": True, "arena_bytes": 19040}})
True
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Target:
    """A kind of device a build ships for.

    Args:
        name: As `--target` takes it.
        description: What it is, for help texts and errors.
        schemes: The quantization schemes (`quantize.schemes.Quantization` values) a file for it may use; None
            for any.
        tflm: The file must run on TensorFlow Lite Micro (`lite.micro.micro_fit`).
        size: The size measure it is chosen by (`report.sizes`), or None for the build's `--size`.
        selective: A file may keep layers in float (selective int8, `quantize.debugger`): a search for it
            offers that recovery when int8 loses too much.
        strip_names: Every file is made without the names no kernel reads (`lite.strip`), and measured and
            chosen so: fewer bytes in flash, no signature runner.
    """

    name: str
    description: str
    schemes: tuple[str, ...] | None = None
    tflm: bool = False
    size: str | None = None
    selective: bool = True
    strip_names: bool = False

    def admits(self, artifact: dict) -> bool:
        """Whether `artifact` (a report's) can ship for this target."""
        if self.schemes is not None and artifact.get("quantization") not in self.schemes:
            return False
        if not self.selective and artifact.get("float_layers"):
            return False
        return not self.tflm or bool((artifact.get("tflm") or {}).get("runs"))

    def why_not(self, artifact: dict) -> str:
        """Why `admits` refuses `artifact`, in a few words."""
        if self.schemes is not None and artifact.get("quantization") not in self.schemes:
            return f"{artifact.get('quantization')} is not full-integer"
        if not self.selective and artifact.get("float_layers"):
            return f"keeps {', '.join(artifact['float_layers'])} in float"
        return (artifact.get("tflm") or {}).get("refused") or "TFLM was not measured (pip install tflite-micro)"


TARGETS = {
    "cpu": Target("cpu", "a phone's or a board's CPU with LiteRT (XNNPACK)"),
    "mcu": Target("mcu", "a microcontroller with TensorFlow Lite Micro: full-integer int8 files TFLM runs, chosen "
                         "by file bytes under --max-ram-kb, without tensor names", schemes=("int8",), tflm=True,
                  size="file", selective=False, strip_names=True),
}
DEFAULT_TARGET = "cpu"


def strips_names(name: str, asked: bool = False) -> bool:
    """Whether a build for target `name` makes its files without the names no kernel reads (`lite.strip`):
    always for a target that does (`mcu`), and for any other when `asked` (`--strip-names`)."""
    return target(name).strip_names or bool(asked)


def target(name: str) -> Target:
    """The target called `name`; an unknown name is refused with the list."""
    if name not in TARGETS:
        raise EdgeCompressError(f"Received an invalid value for `target`, expected one of {list(TARGETS)} "
                                f"({'; '.join(f'{k}: {t.description}' for k, t in TARGETS.items())}). "
                                f"Received: target={name!r}")
    return TARGETS[name]


def tflm_view_of_int8(model, samples: int = 8) -> dict:
    """TensorFlow Lite Micro's view (`lite.micro.MicroFit` as a dict) of `model`'s full-integer int8 file,
    converted with `samples` random calibration inputs: whether TFLM runs it, its arena, the op it refuses."""
    from edgecompress.data.calibration import random_representative
    from edgecompress.lite.micro import micro_fit
    from edgecompress.models.keras_io import input_preprocessing
    from edgecompress.quantize import convert, schemes

    rep = random_representative(input_preprocessing(model).input_shape, samples)
    data = convert.convert(model, schemes.int8_full(), rep)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "int8.tflite"
        path.write_bytes(data)
        return micro_fit(path).to_dict()


def check_model_for(name: str, model) -> None:
    """Refuses, before any training, a model whose int8 file the target's runtime cannot run, naming the op."""
    t = target(name)
    if not t.tflm:
        return
    try:
        fit = tflm_view_of_int8(model)
    except EdgeCompressError as e:
        raise EdgeCompressError(f"--target {name}: model {model.name!r} does not convert to a full-integer int8 "
                                f"file, which a microcontroller needs: {e}") from None
    if not fit["runs"]:
        raise EdgeCompressError(
            f"--target {name}: TensorFlow Lite Micro cannot run model {model.name!r} as int8: {fit['refused']}. "
            "Replace that layer with one TFLM has a kernel for, or build for --target cpu.")
    logger.info("--target %s: TensorFlow Lite Micro runs the model's int8 file in a %d-byte arena", name,
                fit["arena_bytes"])
