#!/usr/bin/env python
"""Does the flatbuffer's sparse tensor encoding shrink a pruned model's file, and does LiteRT run it?

    python scripts/sparse_encoding.py build/edge/final.keras --json docs/results/sparse_encoding.json
    python scripts/sparse_encoding.py build/edge/final.keras \\
        --aarch64-root ~/.cache/edgecompress/device-sim/bookworm-arm64/root --json ...

Converts a pruned model six ways: float32, dynamic range and int8 (calibrated on seeded random inputs), each
dense and with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY` (sparse weights that DENSIFY ops, or sparse kernels,
read). For each file: file bytes, gzip bytes (level 9), whether LiteRT runs it on this host (with XNNPACK, as a
build measures) and TensorFlow Lite Micro, and how far its outputs are from the dense file's on the same seeded
inputs. With `--aarch64-root` (the emulated Pi's root, `invoke device-sim`; needs root and qemu-user-static) the
same in its aarch64 LiteRT and tflite-runtime venvs, through `chroot`: emulated, so accuracy only.

The script runs itself in the device's venv with `--run` (that mode imports numpy and the runtime only).
"""

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SCHEMES = ("float32", "dynamic", "int8")
INPUTS = 100  # seeded inputs each file is run on


def _runtime():
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai-edge-litert"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite-runtime"


def run(paths) -> dict:
    """Each file's outputs on `INPUTS` seeded inputs in [0, 1), or the runtime's refusal."""
    interpreter, runtime = _runtime()
    out = {}
    for path in paths:
        try:
            it = interpreter(model_path=str(path), num_threads=1)
            it.allocate_tensors()
            i, o = it.get_input_details()[0], it.get_output_details()[0]
            rng, ys = np.random.default_rng(1), []
            for _ in range(INPUTS):
                x = rng.random(i["shape"], dtype=np.float32)
                if i["dtype"] != np.float32:
                    scale, zero = i["quantization"]
                    x = np.clip(np.round(x / scale + zero), -128, 127)
                it.set_tensor(i["index"], x.astype(i["dtype"]))
                it.invoke()
                ys.append(it.get_tensor(o["index"]).astype(float).tolist())
            out[Path(path).name] = {"runs": True, "outputs": ys}
        except Exception as e:  # noqa: BLE001 - any refusal is the measurement
            out[Path(path).name] = {"runs": False, "refused": " ".join(str(e).split())[:200]}
    return {"runtime": runtime, "files": out}


def _convert(model, scheme: str, sparse: bool) -> bytes:
    from edgecompress.data.calibration import random_representative
    from edgecompress.models.backend import tf
    from edgecompress.quantize import rewrites

    converter = rewrites.converter_of(model)
    converter.optimizations = ([tf.lite.Optimize.DEFAULT] if scheme != "float32" else []) + (
        [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])
    if scheme == "int8":
        converter.representative_dataset = random_representative(tuple(model.input_shape[1:]), samples=100)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _compare(ran: dict) -> dict:
    """Per sparse file: does it run, and its outputs' largest difference and top-1 agreement with the dense."""
    rows = {}
    for scheme in SCHEMES:
        dense, sparse = ran["files"].get(f"{scheme}.tflite"), ran["files"].get(f"{scheme}_sparse.tflite")
        row = {"dense_runs": dense["runs"], "sparse_runs": sparse["runs"],
               "refused": sparse.get("refused") or dense.get("refused")}
        if dense["runs"] and sparse["runs"]:
            a, b = np.array(dense["outputs"]).reshape(INPUTS, -1), np.array(sparse["outputs"]).reshape(INPUTS, -1)
            row["max_abs_difference"] = float(np.abs(a - b).max())
            row["same_top1"] = float((a.argmax(1) == b.argmax(1)).mean())
        rows[scheme] = row
    return rows


def _on_aarch64(root: Path, folder: Path) -> dict:
    """The files run in each of the emulated Pi's venvs, through chroot."""
    inside = root / "tmp" / "sparse-encoding"
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(folder, inside)
    shutil.copy(__file__, inside / "run.py")
    out = {}
    for venv in sorted((root / "opt").glob("*/bin/python")):
        files = [f"/tmp/sparse-encoding/{p.name}" for p in sorted(folder.glob("*.tflite"))]
        done = subprocess.run(["chroot", str(root), "/usr/bin/env", "QEMU_CPU=cortex-a72", str("/" / venv.relative_to(root)),
                               "/tmp/sparse-encoding/run.py", "--run", *files], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{venv}: {done.stderr[-500:]}")
        ran = json.loads(done.stdout.strip().splitlines()[-1])
        out[ran["runtime"]] = _compare(ran)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="+", help="a pruned Keras model, such as a build's final.keras "
                                             "(with --run: .tflite files to run)")
    ap.add_argument("--run", action="store_true", help="run the given .tflite files and print their outputs")
    ap.add_argument("--aarch64-root", type=Path, help="the emulated Pi's root (invoke device-sim)")
    ap.add_argument("--out", type=Path, default=Path("build/sparse-encoding"), help="where the files are written")
    ap.add_argument("--json", help="write the results file here")
    args = ap.parse_args(argv)
    if args.run:
        print(json.dumps(run(args.model)))
        return 0
    from results_file import stamp, write

    from edgecompress.lite.micro import micro_fit
    from edgecompress.lite.reader import ops, weight_sparsity
    from edgecompress.models.keras_io import load_model

    model = load_model(args.model[0])
    args.out.mkdir(parents=True, exist_ok=True)
    files = {}
    for scheme in SCHEMES:
        for sparse in (False, True):
            name = scheme + ("_sparse" if sparse else "")
            data = _convert(model, scheme, sparse)
            (args.out / f"{name}.tflite").write_bytes(data)
            fit = micro_fit(args.out / f"{name}.tflite")
            files[name] = {"file_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9)),
                           "densify_ops": sum(o["op"] == "DENSIFY" for o in ops(data)),
                           "tflm": fit.to_dict()}
            print(f"{name}: {len(data)} file bytes", file=sys.stderr)
    host = run(sorted(args.out.glob("*.tflite")))
    results = {**stamp("python scripts/sparse_encoding.py " + " ".join(sys.argv[1:] if argv is None else argv)),
               "model": args.model[0], "weight_sparsity": round(weight_sparsity(
                   (args.out / "float32.tflite").read_bytes())["overall"], 3), "inputs": INPUTS,
               "sparse_files": files, "runs_on": {f"this host ({host['runtime']}, XNNPACK)": _compare(host)}}
    if args.aarch64_root:
        results["aarch64_note"] = ("run through chroot, without /proc: XNNPACK cannot read the CPU there, so each "
                                   "runtime's built-in kernels ran the files")
        results["runs_on"].update({f"emulated aarch64 ({k})": v for k, v in _on_aarch64(args.aarch64_root,
                                                                                       args.out).items()})
    write(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
