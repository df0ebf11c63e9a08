"""Finds a TFLite interpreter without importing TensorFlow unless it must.

Order: `ai_edge_litert` (LiteRT, the successor), then `tflite_runtime`
(older boards; needs numpy<2), then TensorFlow's own `tf.lite` as a last
resort. `runtime_info()` says which one was used and its version.

Example:

>>> interp = make_interpreter("build/edge/int8.tflite", num_threads=1)
>>> runtime_info().name
'ai-edge-litert'
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from edgecompress.errors import EdgeCompressError

RUNTIMES = ("ai-edge-litert", "tflite-runtime", "tensorflow")
_MODULES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",
}


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str
    module: object = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version}


_cache: dict[str, RuntimeInfo] = {}


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _numpy_version() -> str:
    import numpy

    return numpy.__version__


def _numpy_major() -> int:
    return int(_numpy_version().split(".")[0])


def _version_tuple(v: str) -> tuple:
    parts = []
    for p in v.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def runtime_info(prefer: str | None = None) -> RuntimeInfo:
    """Returns the first importable runtime (or `prefer`, if given).

    `prefer` may also come from the `EDGECOMPRESS_RUNTIME` environment variable.
    """
    prefer = prefer or os.environ.get("EDGECOMPRESS_RUNTIME") or None
    if prefer is not None and prefer not in RUNTIMES:
        raise EdgeCompressError(
            f"Received an invalid value for `runtime`, expected one of {list(RUNTIMES)}. Received: runtime={prefer!r}"
        )
    key = prefer or "auto"
    if key in _cache:
        return _cache[key]
    errors = []
    for name in [prefer] if prefer else RUNTIMES:
        if name == "tflite-runtime" and _numpy_major() >= 2 and _version_tuple(_version(name)) < (2, 15):
            # Its wheels are compiled against numpy 1.x: the import works, then
            # the first Interpreter fails (or crashes) inside native code.
            errors.append(f"tflite-runtime {_version(name)}: compiled against numpy 1.x, cannot run under "
                          f"numpy {_numpy_version()} (use a numpy<2 environment, or ai-edge-litert)")
            continue
        try:
            if name == "tensorflow":
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                mod = importlib.import_module("tensorflow").lite
            else:
                mod = importlib.import_module(_MODULES[name])
        except Exception as e:  # noqa: BLE001 - e.g. tflite_runtime under numpy 2 raises ImportError/AttributeError
            errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        info = RuntimeInfo(name, _version(name), mod)
        _cache[key] = info
        return info
    raise EdgeCompressError(
        "No TFLite runtime could be imported (" + "; ".join(errors) + "). Install one: "
        "`pip install ai-edge-litert` (numpy 2, Python >= 3.9), or on older boards "
        "`pip install 'numpy<2' tflite-runtime`."
    )


def check_tflite_file(path) -> Path:
    """Cheap structural checks before a file reaches native code.

    Raises:
        EdgeCompressError: naming the file, when it is missing, empty, not a
            TFLite flatbuffer, or truncated.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeCompressError(f"Model file not found: {path}")
    if path.is_dir():
        raise EdgeCompressError(f"Expected a .tflite file, got a directory: {path}")
    data = path.read_bytes()
    if len(data) < 16:
        raise EdgeCompressError(f"{path} is {len(data)} bytes long: not a TFLite model (empty or truncated).")
    if data[4:8] != b"TFL3":
        raise EdgeCompressError(
            f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4). "
            "Convert the model with `invoke quantize` first."
        )
    root = int.from_bytes(data[0:4], "little")
    if root + 4 > len(data):
        raise EdgeCompressError(f"{path} is truncated: its root table points past the end of the file.")
    return path


def probe_in_child(path, runtime: str | None = None, timeout: float = 60.0) -> dict:
    """Loads `path` in a child process, so a crash in native code cannot kill us.

    Returns the model's input details on success.

    Raises:
        EdgeCompressError: with the child's message, or the signal it died of.
    """
    check_tflite_file(path)
    env = dict(os.environ)
    if runtime:
        env["EDGECOMPRESS_RUNTIME"] = runtime
    code = (
        "import json,sys; from edgecompress.lite.runtime import make_interpreter, io_details;"
        "i=make_interpreter(sys.argv[1]); print(json.dumps(io_details(i)))"
    )
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise EdgeCompressError(f"Loading {path} took over {timeout:.0f} s; the file may be malformed.") from None
    if proc.returncode < 0:
        raise EdgeCompressError(
            f"The TFLite runtime crashed (signal {-proc.returncode}) while loading {path}: "
            "the file is malformed. Re-convert the model."
        )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["unknown error"]
        ours = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("edgecompress.errors.EdgeCompressError:")]
        raise EdgeCompressError(ours[-1] if ours else f"Cannot load {path}: {lines[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_interpreter(model_path=None, *, model_content: bytes | None = None, num_threads: int = 1,
                     use_xnnpack: bool = True, runtime: str | None = None):
    """Builds and allocates an interpreter for a `.tflite` file or bytes.

    Args:
        model_path: Path to the `.tflite` file.
        model_content: The model bytes, instead of a path.
        num_threads: CPU threads for the kernels. Defaults to 1.
        use_xnnpack: Apply the default XNNPACK delegate. Defaults to True.
        runtime: Force one of `RUNTIMES`. Defaults to the first importable.

    Raises:
        EdgeCompressError: when the file is not a loadable model, or its
            input has dynamic dimensions.
    """
    info = runtime_info(runtime)
    if model_path is not None:
        check_tflite_file(model_path)
    if not (isinstance(num_threads, int) and num_threads >= 1):
        raise EdgeCompressError(
            f"Received an invalid value for `threads`, expected an integer >= 1. Received: threads={num_threads!r}"
        )
    mod = info.module
    kwargs = {"num_threads": num_threads}
    if not use_xnnpack:
        resolver = getattr(mod, "OpResolverType", None) or getattr(getattr(mod, "experimental", None), "OpResolverType", None)
        if resolver is None:
            raise EdgeCompressError(f"Runtime {info.name} {info.version} cannot turn XNNPACK off.")
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = mod.Interpreter(model_path=str(model_path) if model_path is not None else None,
                                 model_content=model_content, **kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError, SystemError, ImportError) as e:
        raise EdgeCompressError(f"Cannot load {model_path or 'model bytes'} with {info.name} {info.version}: "
                                f"{type(e).__name__}: {str(e).strip()[:300]}") from None
    for d in interp.get_input_details():
        sig = d.get("shape_signature")
        if sig is not None and any(int(s) < 0 for s in sig[1:]):
            raise EdgeCompressError(
                f"{model_path or 'model'}: input {d['name']!r} has dynamic dimensions "
                f"{list(map(int, sig))}; edgecompress needs a fixed input shape. Re-export the "
                "model with a fixed `Input(shape=...)`."
            )
    return interp


def io_details(interp) -> dict:
    """JSON-friendly description of the first input and output tensors (and, for a file of several inputs,
    `inputs`: each of them, in order)."""
    def one(d):
        scale, zp = d.get("quantization", (0.0, 0))
        return {"name": d["name"], "shape": [int(s) for s in d["shape"]],
                "dtype": str(d["dtype"].__name__ if hasattr(d["dtype"], "__name__") else d["dtype"]),
                "scale": float(scale), "zero_point": int(zp)}
    ins = interp.get_input_details()
    several = {"inputs": [one(d) for d in ins]} if len(ins) > 1 else {}
    return {"input": one(ins[0]), **several, "output": one(interp.get_output_details()[0])}


if __name__ == "__main__":  # python -m edgecompress.lite.runtime: say which runtime is found
    info = runtime_info()
    print(json.dumps(info.to_dict()))
