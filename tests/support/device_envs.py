"""Builds the two TensorFlow-free "device" Python environments the SSH tests use.

- `litert`: ai-edge-litert with numpy 2 (current boards).
- `tflite-runtime`: tflite-runtime 2.14 with numpy<2 (older boards; it
  crashes under numpy 2).
- `tflite-runtime-numpy2`: that crash, to test the message users get.

Run `python tests/support/device_envs.py` to build them ahead of the tests
(`.ci/run` does); they live in `build/device-envs/` and are reused.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVS_DIR = ROOT / "build" / "device-envs"
ENVS = {
    "litert": ["numpy>=2", "ai-edge-litert"],
    "tflite-runtime": ["numpy<2", "tflite-runtime==2.14.0"],
    # The mistake users make: the old runtime under numpy 2. It must fail with a message.
    "tflite-runtime-numpy2": ["numpy>=2", "tflite-runtime==2.14.0"],
}


def python_of(name: str) -> Path:
    return ENVS_DIR / name / "bin" / "python"


def build(name: str) -> Path:
    env = ENVS_DIR / name
    marker = env / ".ready"
    if marker.exists():
        return python_of(name)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    subprocess.run([str(python_of(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *ENVS[name]],
                   check=True)
    marker.write_text(" ".join(ENVS[name]) + "\n")
    return python_of(name)


if __name__ == "__main__":
    for n in ENVS:
        print(n, build(n))
