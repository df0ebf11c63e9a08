"""The TensorFlow-free layer: a runtime, the latency harness, accuracy with the interpreter, reading `.tflite`.

This folder is the device boundary. `bench-device` copies it to a board, with
the two files of the package root it imports (`__init__.py`, the lazy public
API, and `errors.py`); a test checks that none of them imports TensorFlow.
"""

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ROOT_FILES = ("__init__.py", "errors.py")  # of the package root, what this folder imports


def device_files() -> list[str]:
    """The files a device needs, relative to the package root: this folder (code and `_data`) and `ROOT_FILES`."""
    here = Path(__file__).resolve().parent
    mine = sorted(p.relative_to(PACKAGE_ROOT).as_posix() for p in here.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".tflite"))
    return [*ROOT_FILES, *mine]
