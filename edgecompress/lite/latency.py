"""Latency benchmark for `.tflite` files, with a command line. TensorFlow-free.

Runs on a Raspberry Pi with only numpy and a TFLite runtime. The fields
mirror what TFLite's own `benchmark_model` reports (init time, first
inference, warm-up average, then timed runs), plus percentiles, peak memory
and the harness's own per-call overhead, measured on a trivial model.

Example:

    python -m edgecompress.lite.latency build/edge/int8.tflite --runs 200 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from edgecompress.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EdgeCompressError, command_result
from edgecompress.lite.harness import set_inputs, time_invokes
from edgecompress.lite.numerics import latency_stats
from edgecompress.lite.runtime import check_tflite_file, make_interpreter, probe_in_child, runtime_info

logger = logging.getLogger(__name__)

TRIVIAL_MODEL = Path(__file__).parent / "_data" / "trivial.tflite"
# Timed invokes per file and untimed ones before them: the one default every task, build and device shares.
DEFAULT_RUNS, DEFAULT_WARMUP = 200, 20
SCHEMA_VERSION = 1


# Architectures one kernel runs natively (64-bit kernels run their 32-bit userlands).
_NATIVE = {"x86_64": {"x86_64", "i386", "i486", "i586", "i686"},
           "aarch64": {"aarch64", "arm64", "armv8l", "armv7l", "armv6l"},
           "riscv64": {"riscv64"}, "ppc64le": {"ppc64le"}, "s390x": {"s390x"}}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def emulation(machine: str | None = None) -> dict:
    """Whether this Python runs on an emulated CPU, and how that was seen.

    Never from the host name. qemu-user (binfmt_misc) reports the guest's
    architecture in `uname` but cannot hide the kernel's: `/proc/sys/kernel/arch`
    (or, on older kernels, an x86 `vendor_id` in `/proc/cpuinfo`) says the
    CPU is another one. A QEMU virtual board (devicetree `linux,dummy-virt`, or
    DMI vendor QEMU) may run its CPU in software (TCG) too: counted as
    emulated, because nothing inside it can tell TCG from KVM for certain.
    """
    machine = machine or platform.machine()
    kernel_arch = _read("/proc/sys/kernel/arch").strip()
    if kernel_arch and machine not in _NATIVE.get(kernel_arch, {kernel_arch}):
        return {"emulated": True, "how": f"qemu-user: this process is {machine} but the kernel is {kernel_arch} "
                                         "(/proc/sys/kernel/arch)"}
    cpuinfo = _read("/proc/cpuinfo")
    vendor = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("vendor_id")), "")
    if vendor in ("GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls") and machine not in _NATIVE["x86_64"]:
        return {"emulated": True, "how": f"qemu-user: this process is {machine} but /proc/cpuinfo shows an x86 CPU "
                                         f"({vendor})"}
    board = (_read("/sys/firmware/devicetree/base/compatible").replace("\x00", " ")
             + " " + _read("/sys/class/dmi/id/sys_vendor")).strip()
    if "dummy-virt" in board or "QEMU" in board:
        return {"emulated": True, "how": f"a QEMU virtual board ({board.split()[0]}); its CPU may be emulated"}
    return {"emulated": False, "how": "native: the kernel and this process have the same architecture"}


def device_emulation(column: dict) -> str | None:
    """How a report's device column (`report["devices"][label]`) was found to
    run on an emulated CPU, or None for a real one."""
    em = (column.get("device") or {}).get("emulation") or {}
    return em.get("how") if em.get("emulated") else None


def device_info() -> dict:
    """OS, CPU model, Python, numpy and runtime of this machine."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                fields.setdefault(key.lower(), value)
    except OSError:
        pass
    cpu = fields.get("model name") or fields.get("hardware") or platform.processor() or platform.machine()
    board = fields.get("model") if not fields.get("model", "0").isdigit() else None
    # Which silicon under a name a VM may share across generations ("AMD EPYC"): x86's family, model, stepping.
    cpu_id = " ".join(f"{k} {fields[f]}" for k, f in (("family", "cpu family"), ("model", "model"),
                                                       ("stepping", "stepping")) if fields.get(f, "").isdigit())
    rt = runtime_info()
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        **({"cpu_id": cpu_id} if cpu_id else {}),
        "board": board,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtime": rt.to_dict(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "emulation": emulation(),
        "qemu_cpu": os.environ.get("QEMU_CPU"),
    }


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def benchmark(model_path, *, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, threads: int = 1, xnnpack: bool = True,
              input_source=None, seed: int = 0, runtime: str | None = None, probe: bool = True,
              profile: bool = False) -> dict:
    """Benchmarks one `.tflite` file; returns a JSON-ready dict.

    Args:
        model_path: The `.tflite` file.
        runs: Timed invokes after warm-up. Defaults to 200.
        warmup: Untimed-in-stats invokes before them. Defaults to 20.
        threads: Interpreter threads. Defaults to 1.
        xnnpack: Use the default XNNPACK delegate. Defaults to True.
        input_source: None for random inputs, or a `.npy` file.
        seed: Seeds the random input. Defaults to 0.
        runtime: Force a runtime from `runtime.RUNTIMES`.
        probe: Load the file in a child process first, so a malformed file
            cannot crash this process. Defaults to True.
        profile: Also time each op alone and measure the file's peak memory
            in a fresh process (`lite.profile`): the result's `profile`.
            Defaults to False.
    """
    if not (isinstance(runs, int) and runs >= 1):
        raise EdgeCompressError(f"Received an invalid value for `runs`, expected an integer >= 1. Received: runs={runs!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise EdgeCompressError(f"Received an invalid value for `warmup`, expected an integer >= 0. Received: warmup={warmup!r}")
    path = check_tflite_file(model_path)
    if probe:
        probe_in_child(path, runtime)
    rss0 = _rss_mb()
    t0 = time.perf_counter_ns()
    interp = make_interpreter(path, num_threads=threads, use_xnnpack=xnnpack, runtime=runtime)
    init_ms = (time.perf_counter_ns() - t0) / 1e6
    details = set_inputs(interp, input_source, seed)  # a file of several inputs: each its own draw
    detail = details[0]
    first_ms = time_invokes(interp, 1)[0]
    warm = time_invokes(interp, warmup) if warmup else []
    timed = time_invokes(interp, runs)
    data = path.read_bytes()
    where = delegation(interp)
    out = {
        "model": path.name,
        "model_sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "runtime": runtime_info(runtime).to_dict(),
        "threads": threads,
        "xnnpack": xnnpack,
        "input": {"shape": [int(s) for s in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                  "source": str(input_source) if input_source else "random",
                  **({"inputs": len(details)} if len(details) > 1 else {})},
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "warmup": {"count": warmup, "mean_ms": float(np.mean(warm)) if warm else None},
        "latency_ms": latency_stats(timed),
        "memory_mb": {"init_delta": _rss_mb() - rss0, "peak_rss": _peak_rss_mb()},
        "delegation": where,
    }
    if profile:
        from edgecompress.lite.profile import profile as profile_file

        out["profile"] = profile_file(path, where, threads=threads, xnnpack=xnnpack, runtime=runtime)
    return out


def delegation(interp) -> dict | None:
    """How the delegate took the graph, read from the interpreter's nodes after it applied the delegate: its
    partitions (`DELEGATE` nodes), and the ops left to the runtime's own kernels, by name and count (an op
    left outside costs a hop out of the delegate and back). None where the runtime lists no nodes.

    Reads `Interpreter._get_ops_details()`, private in ai-edge-litert and tflite-runtime: no public call
    says which nodes a delegate replaced. A delegate node's partition is the ops between its input and
    output tensors."""
    try:
        nodes = interp._get_ops_details()
    except Exception:  # noqa: BLE001 - a runtime without it: the report says nothing rather than guess
        return None
    ops = {int(n["index"]): n for n in nodes if n["op_name"] != "DELEGATE"}
    producer = {int(t): i for i, n in ops.items() for t in n["outputs"]}
    covered = set()
    partitions = [n for n in nodes if n["op_name"] == "DELEGATE"]
    for d in partitions:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            i = producer.get(t)
            if t in stop or i is None or i in covered:
                continue
            covered.add(i)
            todo.extend(int(x) for x in ops[i]["inputs"] if int(x) >= 0)
    outside = {}
    for i, n in sorted(ops.items()):
        if i not in covered:
            outside[n["op_name"]] = outside.get(n["op_name"], 0) + 1
    return {"partitions": len(partitions), "nodes": len(ops), "delegated_nodes": len(covered), "outside": outside,
            "outside_nodes": sorted(i for i in ops if i not in covered)}


def delegation_line(d: dict | None) -> str:
    """One readable line of `delegation`: "2 XNNPACK partitions; AVERAGE_POOL_2D, SOFTMAX ran outside it"."""
    if not d:
        return "not read"
    if not d["partitions"]:
        return "no delegate: every op ran on the runtime's own kernels"
    outside = ", ".join(f"{op}{f' x{k}' if k > 1 else ''}" for op, k in d["outside"].items())
    return (f"{d['partitions']} XNNPACK partition{'s' if d['partitions'] > 1 else ''}; " +
            (f"{outside} ran outside it ({d['nodes'] - d['delegated_nodes']} of {d['nodes']} nodes)" if outside
             else "every op inside it"))


def harness_overhead_us(runs: int = 2000, runtime: str | None = None) -> float:
    """Median time of one timed call on a trivial one-op model, in microseconds."""
    interp = make_interpreter(TRIVIAL_MODEL, num_threads=1, runtime=runtime)
    time_invokes(interp, 100)
    return float(np.median(time_invokes(interp, runs)) * 1000.0)


def load_eval_data(path) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads an `.npz` with float32 inputs `x` (already preprocessed: pixels scaled, or features as they are),
    integer labels `y`, and optionally `task` (`lite.tasks`; default classification)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"].astype(np.float32), z["y"]
            y = y.astype(np.float32 if np.issubdtype(y.dtype, np.floating) else np.int64)  # values, or class ids
            task = str(z["task"]) if "task" in z.files else "classification"
    except (OSError, ValueError, KeyError) as e:
        raise EdgeCompressError(f"Cannot read evaluation data {path} (an .npz with `x` and `y`): {e}") from None
    if len(x) != len(y) or len(y) == 0:
        raise EdgeCompressError(f"Evaluation data {path} has {len(x)} inputs and {len(y)} labels; expected the same, > 0.")
    return x, y, task


def accuracy(model_path, x: np.ndarray, y: np.ndarray, task: str = "classification", *, threads: int = 1,
             xnnpack: bool = True, runtime: str | None = None) -> dict:
    """Top-1 of one `.tflite` file on (x, y) with this machine's runtime, and its predicted labels; for another
    task (`lite.tasks`), its metric ("metric", e.g. ROC-AUC) and no labels."""
    from edgecompress.lite import tasks
    from edgecompress.lite.evaluation import predict

    interp = make_interpreter(check_tflite_file(model_path), num_threads=threads, use_xnnpack=xnnpack, runtime=runtime)
    outputs = predict(interp, x)
    t = tasks.task(task)
    if not t.compares_labels or t.multi_label:
        out = {"task": t.name, "metric": t.score(x, outputs, y), "count": int(len(y))}
    else:
        out = {"top1": float(t.score(x, outputs, y)), "count": int(len(y)),
               "predictions": t.predictions(outputs).astype(int).tolist()}
    if isinstance(t, tasks.SeveralOutputs):  # a model of several outputs: each measured on the device too
        out["outputs"] = t.each(x, outputs, y)
    return out


def tflm_view(model_path, xy=None, litert: dict | None = None) -> dict:
    """TensorFlow Lite Micro's view of one file on this machine (`lite.micro`): whether it runs, its arena, the
    op it refuses; with `xy` and LiteRT's result on them (`accuracy`), TFLM's own top-1 (its reference kernels)
    and its agreement with LiteRT's predictions. `{"error": ...}` where tflite-micro is not installed."""
    from edgecompress.lite import micro

    try:
        out = micro.micro_fit(model_path).to_dict()
    except EdgeCompressError as e:
        return {"error": str(e)}
    if out["runs"] and xy is not None and litert and "predictions" in litert:
        x, y, _ = xy
        predictions = micro.micro_outputs(model_path, x).argmax(-1)
        out["top1"] = float(np.mean(predictions == np.asarray(y)))
        out["agreement"] = float(np.mean(predictions == np.asarray(litert["predictions"])))
        out["count"] = int(len(y))
    return out


def run(models, eval_data=None, tflm: bool = False, **kwargs) -> dict:
    """Benchmarks several files; returns {"device", "harness_overhead_us", "results", "errors"}.

    With `eval_data` (an `.npz`, see `load_eval_data`), each result also gets
    `accuracy`: top-1 and the predicted labels on this device. With `tflm`, each gets `tflm` too
    (`tflm_view`): TensorFlow Lite Micro's arena and refusal, and on `eval_data` its top-1 and agreement with
    LiteRT.
    """
    overhead = harness_overhead_us(runtime=kwargs.get("runtime"))  # also proves the runtime works
    xy = load_eval_data(eval_data) if eval_data else None
    results, errors = [], []
    for m in models:
        try:
            logger.info("Benchmarking %s", m)
            r = benchmark(m, **kwargs)
            if xy is not None:
                logger.info("Evaluating %s on %d inputs (%s)", m, len(xy[1]), xy[2])
                r["accuracy"] = accuracy(m, *xy, threads=kwargs.get("threads", 1), xnnpack=kwargs.get("xnnpack", True),
                                         runtime=kwargs.get("runtime"))
            if tflm:
                logger.info("TensorFlow Lite Micro on %s", m)
                r["tflm"] = tflm_view(m, xy, r.get("accuracy"))
            results.append(r)
        except EdgeCompressError as e:
            errors.append({"model": Path(m).name, "error": str(e)})
    return {
        "schema_version": SCHEMA_VERSION,
        "device": device_info(),
        "harness_overhead_us": overhead,
        "results": results,
        "errors": errors,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecompress.lite.latency", description="Benchmark .tflite files (TensorFlow-free).")
    p.add_argument("models", nargs="+", help=".tflite files")
    p.add_argument("--runs", type=int, default=200, help="timed invokes after warm-up (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up invokes (default 20)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--no-xnnpack", action="store_true", help="disable the default XNNPACK delegate")
    p.add_argument("--input", default=None, help=".npy file with one input (default: random)")
    p.add_argument("--runtime", default=None, choices=["ai-edge-litert", "tflite-runtime", "tensorflow"])
    p.add_argument("--json", default=None, help="write the JSON result here (default: stdout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-data", default=None, help=".npz with preprocessed inputs `x` and labels `y`: also measure top-1")
    p.add_argument("--profile", action="store_true",
                   help="also time each op alone and measure each file's peak memory (edgecompress.lite.profile)")
    p.add_argument("--tflm", action="store_true",
                   help="also load each file in TensorFlow Lite Micro (pip install tflite-micro): its arena, the op "
                        "it refuses, and with --eval-data its top-1 and agreement with LiteRT")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out, code = command_result(lambda: run(args.models, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                           xnnpack=not args.no_xnnpack, input_source=args.input, seed=args.seed,
                                           runtime=args.runtime, eval_data=args.eval_data, profile=args.profile,
                                           tflm=args.tflm))
    if code is not None:
        return code
    text = json.dumps(out, indent=2)
    if args.json:
        from edgecompress.lite.fileio import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    else:
        print(text)
    for err in out["errors"]:
        print(f"error: {err['model']}: {err['error']}", file=sys.stderr)
    if not out["errors"]:
        return EXIT_OK
    return EXIT_PARTIAL if out["results"] else EXIT_USAGE  # some files failed / every file failed


if __name__ == "__main__":
    sys.exit(main())
